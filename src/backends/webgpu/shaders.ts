import type { Activation } from "../kernels.js";

/**
 * The WGSL side shared by every op (each op's own kernels are in its file under src/ops/). Each kernel is a body plus a declared list of storage bindings and scalar parameters;
 * `buildShader` adds the declarations. Every binding is bound as a sub-range of its buffer (so tensors
 * larger than maxStorageBufferBindingSize can be processed chunk by chunk), and kernels address
 * elements by their index in the whole tensor through `ld_<name>(i)` / `st_<name>(i, v)`, which subtract
 * the range's first element (`P.base_<name>`). Loads return f32 and stores take f32 whatever the storage
 * type, so the same body serves f32 and f16 storage.
 */

export type ParamType = "u32" | "i32" | "f32";

export interface BindingDecl {
  readonly name: string;
  /** The kernel stores into this binding. */
  readonly write?: boolean;
  /** Internal scratch (statistics) that stays f32 even with f16 storage. */
  readonly f32?: boolean;
  /**
   * f16 weights (allocHalf buffers, 2 bytes per value). With f16 storage that is the storage type; with f32
   * storage the binding is array<u32>, two values per word, and ld_ unpacks them with unpack2x16float (core
   * WGSL: no shader-f16 needed). Exact: every f16 is an f32.
   */
  readonly half?: boolean;
  /** Viewed as raw u32 words whatever the storage type (the kernel addresses words itself). */
  readonly words?: boolean;
}

export interface KernelDef {
  /** Unique per WGSL variant: it keys the pipeline cache. */
  readonly name: string;
  readonly bindings: readonly BindingDecl[];
  readonly params: readonly (readonly [string, ParamType])[];
  readonly body: string;
}

/** Workgroup index flattened over a 3-D grid (grids are folded to respect maxComputeWorkgroupsPerDimension). */
const FLAT = `fn flat_wg(wid: vec3u, nwg: vec3u) -> u32 { return wid.x + nwg.x * (wid.y + nwg.y * wid.z); }\n`;

/** Finite stand-in for -infinity: keeps `exp(a - b)` free of inf - inf. */
export const NEG = "-3.0e38";

/**
 * Full WGSL for a kernel. `roots[i]` is the binding whose declared array binding i reads and writes
 * through: a buffer that is written and also passed as another argument (in-place ops) must be bound
 * once, because WebGPU forbids a writable binding overlapping another binding of the same buffer.
 */
export function buildShader(
  def: KernelDef,
  roots: readonly number[],
  writable: readonly boolean[],
  f16: boolean,
): string {
  let s = f16 ? "enable f16;\nalias T = f16;\n" : "alias T = f32;\n";
  s += "struct Params {\n";
  for (const b of def.bindings) s += `  base_${b.name}: u32,\n`;
  for (const [n, t] of def.params) s += `  ${n}: ${t},\n`;
  s += "}\n@group(0) @binding(0) var<uniform> P: Params;\n";
  def.bindings.forEach((b, i) => {
    const root = def.bindings[roots[i]];
    const packed = (root.half && !f16) || root.words;
    const ty = root.f32 ? "f32" : packed ? "u32" : "T";
    if (roots[i] === i) {
      s += `@group(0) @binding(${i + 1}) var<storage, ${writable[i] ? "read_write" : "read"}> b_${b.name}: array<${ty}>;\n`;
    }
    if (root.words) return;
    if (packed) {
      // bindings start at an aligned byte offset, so element i - base is in word (i - base) / 2
      s += `fn ld_${b.name}(i: u32) -> f32 { let j = i - P.base_${b.name}; let v = unpack2x16float(b_${root.name}[j >> 1u]); return select(v.x, v.y, (j & 1u) == 1u); }\n`;
      return;
    }
    s += `fn ld_${b.name}(i: u32) -> f32 { return f32(b_${root.name}[i - P.base_${b.name}]); }\n`;
    if (b.write) s += `fn st_${b.name}(i: u32, v: f32) { b_${root.name}[i - P.base_${b.name}] = ${ty}(v); }\n`;
  });
  return s + FLAT + def.body;
}

/** The activations as WGSL; the same formulas as src/ops/activate.ts, written to avoid overflow. */
export function activationFn(a: Activation): string {
  switch (a) {
    case "none":
      return "fn act(x: f32) -> f32 { return x; }\n";
    case "relu":
      return "fn act(x: f32) -> f32 { return max(x, 0.0); }\n";
    case "silu":
      // exp(-x) overflows to inf for x < -88 and x / inf = -0, the right limit.
      return "fn act(x: f32) -> f32 { return x / (1.0 + exp(-x)); }\n";
    case "mish":
      // softplus with PyTorch's threshold 20; log1p(u) = u * log(1 + u) / ((1 + u) - 1) keeps precision for
      // tiny u; tanh written with exp(-2s), s >= 0, so it cannot overflow.
      return `fn act(x: f32) -> f32 {
  var sp = x;
  if (x <= 20.0) {
    let u = exp(x);
    let w = 1.0 + u;
    sp = select(u * log(w) / (w - 1.0), u, w == 1.0);
  }
  let e = exp(-2.0 * sp);
  return x * (1.0 - e) / (1.0 + e);
}\n`;
    case "gelu":
      // Exact-erf GELU; erf from the same Chebyshev fit of erfc as the reference (|error| < 1.2e-7).
      return `fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn act(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }\n`;
  }
}

const memo = new Map<string, KernelDef>();
/** A kernel built once per name (the name keys the pipeline cache, so it must name every variant). */
export function defineKernel(name: string, make: () => Omit<KernelDef, "name">): KernelDef {
  let d = memo.get(name);
  if (!d) memo.set(name, (d = { name, ...make() }));
  return d;
}

/** Elementwise kernels: one thread per element of [start, start + count). */
export const ELEMENTWISE_HEAD = `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  if (i >= P.count) { return; }
  let e = P.start + i;
`;

/** f32 staging -> storage type (the f16 upload path): out[start + i] = src[src0 + i]. */
export const castKernel = (): KernelDef =>
  defineKernel("cast", () => ({
    bindings: [
      { name: "src", f32: true },
      { name: "out", write: true },
    ],
    params: [
      ["start", "u32"],
      ["count", "u32"],
      ["src0", "u32"],
    ],
    body: ELEMENTWISE_HEAD + "  st_out(e, ld_src(P.src0 + i));\n}\n",
  }));

/** One f16 value into a half buffer's word (writeHalf's unaligned ends): element `e` gets the bits `bits`. */
export const setHalfKernel = (): KernelDef =>
  defineKernel("set_half", () => ({
    bindings: [{ name: "out", write: true, words: true }],
    params: [
      ["e", "u32"],
      ["bits", "u32"],
    ],
    body: `@compute @workgroup_size(1)
fn main() {
  let j = P.e - P.base_out;
  let w = b_out[j >> 1u];
  b_out[j >> 1u] = select((w & 0xffff0000u) | P.bits, (w & 0xffffu) | (P.bits << 16u), (j & 1u) == 1u);
}
`,
  }));

/**
 * The 64×64 tiles' inner step, shared by the GEMM and the convolution: 16 k-slices of 4×4 outer products
 * per thread from the two shared-memory tiles `a` (rows) and `b` (columns), into `acc`.
 */
export function tileOuterProducts(a: string, b: string): string {
  return `    for (var kk = 0u; kk < 16u; kk++) {
      let o = kk * 64u;
      let av = vec4f(${a}[o + lid.y], ${a}[o + lid.y + 16u], ${a}[o + lid.y + 32u], ${a}[o + lid.y + 48u]);
      let bv = vec4f(${b}[o + lid.x], ${b}[o + lid.x + 16u], ${b}[o + lid.x + 32u], ${b}[o + lid.x + 48u]);
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }`;
}
