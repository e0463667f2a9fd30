import type { Activation } from "../kernels.js";

/**
 * WGSL kernels. Each kernel is a body plus a declared list of storage bindings and scalar parameters;
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
const NEG = "-3.0e38";

/**
 * Full WGSL for a kernel. `roots[i]` is the binding whose declared array binding i reads and writes
 * through: a buffer that is written and also passed as another argument (in-place ops) must be bound
 * once, because WebGPU forbids a writable binding overlapping another binding of the same buffer.
 */
export function buildShader(def: KernelDef, roots: readonly number[], writable: readonly boolean[], f16: boolean): string {
  let s = f16 ? "enable f16;\nalias T = f16;\n" : "alias T = f32;\n";
  s += "struct Params {\n";
  for (const b of def.bindings) s += `  base_${b.name}: u32,\n`;
  for (const [n, t] of def.params) s += `  ${n}: ${t},\n`;
  s += "}\n@group(0) @binding(0) var<uniform> P: Params;\n";
  def.bindings.forEach((b, i) => {
    const root = def.bindings[roots[i]];
    const ty = root.f32 ? "f32" : "T";
    if (roots[i] === i) {
      s += `@group(0) @binding(${i + 1}) var<storage, ${writable[i] ? "read_write" : "read"}> b_${b.name}: array<${ty}>;\n`;
    }
    s += `fn ld_${b.name}(i: u32) -> f32 { return f32(b_${root.name}[i - P.base_${b.name}]); }\n`;
    if (b.write) s += `fn st_${b.name}(i: u32, v: f32) { b_${root.name}[i - P.base_${b.name}] = ${ty}(v); }\n`;
  });
  return s + FLAT + def.body;
}

/** The activations as WGSL; the same formulas as reference/activations.ts, written to avoid overflow. */
function activationFn(a: Activation): string {
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
function def(name: string, make: () => Omit<KernelDef, "name">): KernelDef {
  let d = memo.get(name);
  if (!d) memo.set(name, (d = { name, ...make() }));
  return d;
}

/** Elementwise kernels: one thread per element of [start, start + count). */
const ELEMENTWISE_HEAD = `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  if (i >= P.count) { return; }
  let e = P.start + i;
`;

export const addKernel = (): KernelDef =>
  def("add", () => ({
    bindings: [{ name: "a" }, { name: "b" }, { name: "out", write: true }],
    params: [["start", "u32"], ["count", "u32"]],
    body: ELEMENTWISE_HEAD + "  st_out(e, ld_a(e) + ld_b(e));\n}\n",
  }));

export const activationKernel = (a: Activation): KernelDef =>
  def(`act_${a}`, () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [["start", "u32"], ["count", "u32"]],
    body: activationFn(a) + ELEMENTWISE_HEAD + "  st_out(e, act(ld_x(e)));\n}\n",
  }));

/** f32 staging -> storage type (the f16 upload path): out[start + i] = src[src0 + i]. */
export const castKernel = (): KernelDef =>
  def("cast", () => ({
    bindings: [{ name: "src", f32: true }, { name: "out", write: true }],
    params: [["start", "u32"], ["count", "u32"], ["src0", "u32"]],
    body: ELEMENTWISE_HEAD + "  st_out(e, ld_src(P.src0 + i));\n}\n",
  }));

/** Strided 2-D copy of the block rows [r0, r0 + rc) x cols [c0, c0 + cc). */
export const copyKernel = (): KernelDef =>
  def("copy", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["r0", "u32"], ["rc", "u32"], ["c0", "u32"], ["cc", "u32"],
      ["x_off", "u32"], ["x_stride", "u32"], ["o_off", "u32"], ["o_stride", "u32"],
    ],
    body: `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  if (i >= P.rc * P.cc) { return; }
  let r = P.r0 + i / P.cc;
  let c = P.c0 + i % P.cc;
  st_out(P.o_off + r * P.o_stride + c, ld_x(P.x_off + r * P.x_stride + c));
}
`,
  }));

/** Nearest 2x upsampling over flattened input rows [r0, r0 + rc) (row r of the input feeds output rows 2r, 2r+1). */
export const upsampleKernel = (): KernelDef =>
  def("upsample2x", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [["r0", "u32"], ["rc", "u32"], ["w", "u32"]],
    body: `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  let w2 = 2u * P.w;
  if (i >= P.rc * 2u * w2) { return; }
  let r = P.r0 + (i / w2) / 2u;
  st_out(P.r0 * 2u * w2 + i, ld_x(r * P.w + (i % w2) / 2u));
}
`,
  }));

/**
 * The 64×64 tiles' inner step, shared by the GEMM and the convolution: 16 k-slices of 4×4 outer products
 * per thread from the two shared-memory tiles `a` (rows) and `b` (columns), into `acc`.
 */
function tileOuterProducts(a: string, b: string): string {
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

/** Batched transpose through a padded 16x16 shared tile so both the reads and the writes are coalesced. */
export const transposeKernel = (): KernelDef =>
  def("transpose", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["b0", "u32"], ["bc", "u32"], ["r0", "u32"], ["rc", "u32"], ["c0", "u32"], ["cc", "u32"],
      ["rows", "u32"], ["cols", "u32"], ["tiles_r", "u32"], ["tiles_c", "u32"],
    ],
    body: `var<workgroup> tile: array<f32, 272>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_r * P.tiles_c;
  if (wg >= P.bc * per_b) { return; }
  let base = (P.b0 + wg / per_b) * P.rows * P.cols;
  let t = wg % per_b;
  let tr = P.r0 + (t / P.tiles_c) * 16u;
  let tc = P.c0 + (t % P.tiles_c) * 16u;
  let r_end = P.r0 + P.rc;
  let c_end = P.c0 + P.cc;
  let r = tr + lid.y;
  let c = tc + lid.x;
  if (r < r_end && c < c_end) { tile[lid.y * 17u + lid.x] = ld_x(base + r * P.cols + c); }
  workgroupBarrier();
  let o_row = tc + lid.y;
  let o_col = tr + lid.x;
  if (o_row < c_end && o_col < r_end) { st_out(base + o_row * P.rows + o_col, tile[lid.x * 17u + lid.y]); }
}
`,
  }));

/** Row softmax, one workgroup per row: an online (max, sum) per thread, merged by a tree, then one write pass. */
export const softmaxKernel = (): KernelDef =>
  def("softmax", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [["r0", "u32"], ["rc", "u32"], ["cols", "u32"]],
    body: `var<workgroup> red_m: array<f32, 256>;
var<workgroup> red_s: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.rc) { return; }
  let base = (P.r0 + wg) * P.cols;
  var m = ${NEG};
  var s = 0.0;
  for (var j = li; j < P.cols; j += 256u) {
    let v = ld_x(base + j);
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  red_m[li] = m;
  red_s[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) {
      let m2 = red_m[li + w];
      let mm = max(m, m2);
      s = s * exp(m - mm) + red_s[li + w] * exp(m2 - mm);
      m = mm;
      red_m[li] = m;
      red_s[li] = s;
    }
    workgroupBarrier();
  }
  let mx = red_m[0];
  let inv = 1.0 / red_s[0];
  for (var j = li; j < P.cols; j += 256u) { st_out(base + j, exp(ld_x(base + j) - mx) * inv); }
}
`,
  }));

/** Chan's merge of two (count, mean, M2) triples; used by both group-norm reductions. */
const CHAN = `fn chan(a: vec3f, b: vec3f) -> vec3f {
  let n = a.x + b.x;
  if (b.x == 0.0) { return a; }
  if (a.x == 0.0) { return b; }
  let d = b.y - a.y;
  return vec3f(n, a.y + d * (b.x / n), a.z + b.z + d * d * (a.x * b.x / n));
}
`;

/**
 * Group-norm statistics, stage 1: each workgroup reduces one slice of one group (Welford per thread,
 * Chan's merge across threads) into part[slice] = (count, mean, M2). Slicing spreads big groups over
 * many workgroups and keeps every binding small.
 */
export const groupNormStatsKernel = (): KernelDef =>
  def("gn_stats", () => ({
    bindings: [{ name: "x" }, { name: "part", write: true, f32: true }],
    params: [["s0", "u32"], ["sc", "u32"], ["span", "u32"], ["slice", "u32"], ["parts", "u32"]],
    body: `var<workgroup> red: array<vec3f, 256>;
${CHAN}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.sc) { return; }
  let s = P.s0 + wg;
  let g = s / P.parts;
  let p = s % P.parts;
  let begin = g * P.span + p * P.slice;
  let end = g * P.span + min(P.span, (p + 1u) * P.slice);
  var acc = vec3f(0.0);
  for (var i = begin + li; i < end; i += 256u) {
    let v = ld_x(i);
    acc.x += 1.0;
    let d = v - acc.y;
    acc.y += d / acc.x;
    acc.z += d * (v - acc.y);
  }
  red[li] = acc;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { acc = chan(acc, red[li + w]); red[li] = acc; }
    workgroupBarrier();
  }
  if (li == 0u) { st_part(s * 3u, acc.x); st_part(s * 3u + 1u, acc.y); st_part(s * 3u + 2u, acc.z); }
}
`,
  }));

/** Group-norm statistics, stage 2: merge each group's slices into stat[g] = (mean, 1/sqrt(var + eps)). */
export const groupNormFinalKernel = (): KernelDef =>
  def("gn_final", () => ({
    bindings: [{ name: "part", f32: true }, { name: "stat", write: true, f32: true }],
    params: [["g0", "u32"], ["gc", "u32"], ["parts", "u32"], ["eps", "f32"]],
    body: `${CHAN}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 64u + li;
  if (i >= P.gc) { return; }
  let g = P.g0 + i;
  var acc = vec3f(0.0);
  for (var p = 0u; p < P.parts; p++) {
    let j = (g * P.parts + p) * 3u;
    acc = chan(acc, vec3f(ld_part(j), ld_part(j + 1u), ld_part(j + 2u)));
  }
  st_stat(g * 2u, acc.y);
  st_stat(g * 2u + 1u, 1.0 / sqrt(acc.z / acc.x + P.eps));
}
`,
  }));

/** Group-norm stage 3, elementwise: normalise, affine, fused activation. */
export const groupNormApplyKernel = (a: Activation): KernelDef =>
  def(`gn_apply_${a}`, () => ({
    bindings: [{ name: "x" }, { name: "gamma" }, { name: "beta" }, { name: "stat", f32: true }, { name: "out", write: true }],
    params: [
      ["start", "u32"], ["count", "u32"], ["spatial", "u32"], ["channels", "u32"], ["cpg", "u32"], ["groups", "u32"],
    ],
    body:
      activationFn(a) +
      ELEMENTWISE_HEAD +
      `  let plane = e / P.spatial;
  let ch = plane % P.channels;
  let g = (plane / P.channels) * P.groups + ch / P.cpg;
  st_out(e, act((ld_x(e) - ld_stat(g * 2u)) * ld_stat(g * 2u + 1u) * ld_gamma(ch) + ld_beta(ch)));
}
`,
  }));

/** Per-(batch, channel) scale and shift, then the activation: group norm with precomputed statistics. */
export const channelAffineKernel = (a: Activation): KernelDef =>
  def(`affine_${a}`, () => ({
    bindings: [{ name: "x" }, { name: "scale" }, { name: "shift" }, { name: "out", write: true }],
    params: [["start", "u32"], ["count", "u32"], ["spatial", "u32"]],
    body: activationFn(a) + ELEMENTWISE_HEAD + `  let plane = e / P.spatial;
  st_out(e, act(ld_x(e) * ld_scale(plane) + ld_shift(plane)));
}
`,
  }));

/**
 * Tiled GEMM shared by matmul and linear: a workgroup computes a 64x64 block of out[b] = alpha * a[b] @ B
 * (+ bias[n]) with 16x16 threads, each a 4x4 micro-tile (rows ty + 16i, cols tx + 16j) so that shared
 * reads and global writes are contiguous across threads. The K loop covers [k0, k0 + kc); chunks after the
 * first accumulate into out (flag 1), the first adds the bias (flag 2).
 */
export const gemmKernel = (transB: boolean): KernelDef =>
  def(transB ? "gemm_nt" : "gemm_nn", () => ({
    bindings: [{ name: "a" }, { name: "b" }, { name: "bias" }, { name: "out", write: true }],
    params: [
      ["b0", "u32"], ["bc", "u32"], ["m0", "u32"], ["mc", "u32"], ["n0", "u32"], ["nc", "u32"], ["k0", "u32"], ["kc", "u32"],
      ["M", "u32"], ["N", "u32"], ["K", "u32"], ["tiles_m", "u32"], ["tiles_n", "u32"], ["alpha", "f32"], ["flags", "u32"],
    ],
    body: `var<workgroup> as_: array<f32, 1024>;
var<workgroup> bs_: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_m * P.tiles_n;
  if (wg >= P.bc * per_b) { return; }
  let bt = P.b0 + wg / per_b;
  let t = wg % per_b;
  let m_base = (t / P.tiles_n) * 64u;
  let n_base = (t % P.tiles_n) * 64u;
  let k_end = P.k0 + P.kc;
  var acc: array<vec4f, 4>;
  for (var kt = P.k0; kt < k_end; kt += 16u) {
    for (var q = 0u; q < 4u; q++) {
      // a tile stored [kk][m]: this thread loads row li / 16 + 16q, column li % 16
      let mm = li / 16u + 16u * q;
      let kk = li % 16u;
      var v = 0.0;
      if (m_base + mm < P.mc && kt + kk < k_end) { v = ld_a((bt * P.M + P.m0 + m_base + mm) * P.K + kt + kk); }
      as_[kk * 64u + mm] = v;
${transB
  ? `      let nn = li / 16u + 16u * q;
      var u = 0.0;
      if (n_base + nn < P.nc && kt + kk < k_end) { u = ld_b((bt * P.N + P.n0 + n_base + nn) * P.K + kt + kk); }
      bs_[kk * 64u + nn] = u;`
  : `      let kb = li / 64u + 4u * q;
      let nn = li % 64u;
      var u = 0.0;
      if (n_base + nn < P.nc && kt + kb < k_end) { u = ld_b((bt * P.K + kt + kb) * P.N + P.n0 + n_base + nn); }
      bs_[kb * 64u + nn] = u;`}
    }
    workgroupBarrier();
${tileOuterProducts("as_", "bs_")}
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m_base + lid.y + 16u * i;
    if (m >= P.mc) { continue; }
    let row = (bt * P.M + P.m0 + m) * P.N + P.n0;
    for (var j = 0u; j < 4u; j++) {
      let n = n_base + lid.x + 16u * j;
      if (n >= P.nc) { continue; }
      var v = P.alpha * acc[i][j];
      if ((P.flags & 2u) != 0u) { v += ld_bias(P.n0 + n); }
      if ((P.flags & 1u) != 0u) { v += ld_out(row + n); }
      st_out(row + n, v);
    }
  }
}
`,
  }));

/**
 * Direct convolution as an implicit GEMM (no im2col buffer): a workgroup computes 64 output channels x 64
 * output pixels of one image; the reduction runs over (input channel, ky, kx) in steps of 16, gathering the
 * input tile straight from x with zero padding. The chunk covers batch [n0, n0+bc), out channels
 * [o0, o0+oc), output rows [oy0, oy0+rc), input channels [c0, c0+cc). Flags: 1 accumulate into out
 * (later input-channel chunks, or residual == out), 2 add bias, 4 add residual.
 */
export const convKernel = (kh: number, kw: number): KernelDef => {
  // 1x1 and 3x3 (every conv in the VAE) get the kernel size as constants, so the per-element index
  // divisions in the input gather become multiply-shifts.
  const fixed = (kh === 1 && kw === 1) || (kh === 3 && kw === 3);
  const sizeFns = fixed
    ? `fn k_h() -> u32 { return ${kh}u; }\nfn k_w() -> u32 { return ${kw}u; }\n`
    : "fn k_h() -> u32 { return P.KH; }\nfn k_w() -> u32 { return P.KW; }\n";
  return def(fixed ? `conv2d_${kh}x${kw}` : "conv2d", () => ({
    bindings: [{ name: "x" }, { name: "w" }, { name: "bias" }, { name: "res" }, { name: "out", write: true }],
    params: [
      ["n0", "u32"], ["bc", "u32"], ["o0", "u32"], ["oc", "u32"], ["oy0", "u32"], ["rc", "u32"], ["c0", "u32"], ["cc", "u32"],
      ["C", "u32"], ["H", "u32"], ["W", "u32"], ["O", "u32"], ["OH", "u32"], ["OW", "u32"], ["KH", "u32"], ["KW", "u32"],
      ["sy", "u32"], ["pad_t", "i32"], ["pad_l", "i32"], ["tiles_p", "u32"], ["tiles_o", "u32"], ["flags", "u32"],
    ],
    body: sizeFns + `var<workgroup> ws: array<f32, 1024>;
var<workgroup> xs: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_p * P.tiles_o;
  if (wg >= P.bc * per_b) { return; }
  let n = P.n0 + wg / per_b;
  let t = wg % per_b;
  let o_base = (t / P.tiles_p) * 64u;
  let p_base = (t % P.tiles_p) * 64u;
  let ka = k_h() * k_w();
  let kc = P.cc * ka;
  let npix = P.rc * P.OW;
  // The input-tile column (output pixel) and the weight-tile column (k offset) this thread loads never change.
  let xp = p_base + li % 64u;
  let xp_ok = xp < npix;
  let iy0 = i32((P.oy0 + xp / P.OW) * P.sy) - P.pad_t;
  let ix0 = i32((xp % P.OW) * P.sy) - P.pad_l;
  let plane = P.H * P.W;
  let x_base = (n * P.C + P.c0) * plane;
  let wk = li % 16u;
  var acc: array<vec4f, 4>;
  for (var k0 = 0u; k0 < kc; k0 += 16u) {
    for (var q = 0u; q < 4u; q++) {
      let ol = li / 16u + 16u * q;
      var v = 0.0;
      if (o_base + ol < P.oc && k0 + wk < kc) { v = ld_w(((P.o0 + o_base + ol) * P.C + P.c0) * ka + k0 + wk); }
      ws[wk * 64u + ol] = v;
      let kk = li / 64u + 4u * q;
      let k = k0 + kk;
      var u = 0.0;
      if (xp_ok && k < kc) {
        let c = k / ka;
        let kr = k % ka;
        let iy = iy0 + i32(kr / k_w());
        let ix = ix0 + i32(kr % k_w());
        if (iy >= 0 && iy < i32(P.H) && ix >= 0 && ix < i32(P.W)) {
          u = ld_x(x_base + c * plane + u32(iy) * P.W + u32(ix));
        }
      }
      xs[kk * 64u + li % 64u] = u;
    }
    workgroupBarrier();
${tileOuterProducts("ws", "xs")}
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let o = o_base + lid.y + 16u * i;
    if (o >= P.oc) { continue; }
    let ob = ((n * P.O + P.o0 + o) * P.OH + P.oy0) * P.OW;
    var bv = 0.0;
    if ((P.flags & 2u) != 0u) { bv = ld_bias(P.o0 + o); }
    for (var j = 0u; j < 4u; j++) {
      let p = p_base + lid.x + 16u * j;
      if (p >= npix) { continue; }
      var v = acc[i][j] + bv;
      if ((P.flags & 1u) != 0u) { v += ld_out(ob + p); }
      if ((P.flags & 4u) != 0u) { v += ld_res(ob + p); }
      st_out(ob + p, v);
    }
  }
}
`,
  }));
};

/**
 * Flash-style attention: a workgroup owns 16 query rows and streams the keys [k0, k0+kc) in tiles of 64,
 * keeping a running max m and sum l per row (online softmax), so no score matrix beyond 16x64 ever exists.
 * The unnormalised output accumulates in `out` itself (each (row, d) is owned by one thread), which keeps
 * the head dimension unbounded. When keys are split over several dispatches, m and l persist in `ml`
 * between them. Flags: 1 first key chunk, 2 last key chunk (divide by l).
 */
export const attentionKernel = (): KernelDef =>
  def("attention", () => ({
    bindings: [{ name: "q" }, { name: "k" }, { name: "v" }, { name: "out", write: true }, { name: "ml", write: true, f32: true }],
    params: [
      ["b0", "u32"], ["bc", "u32"], ["q0", "u32"], ["qc", "u32"], ["k0", "u32"], ["kc", "u32"],
      ["NQ", "u32"], ["NK", "u32"], ["D", "u32"], ["tiles_q", "u32"], ["scale", "f32"], ["flags", "u32"],
    ],
    body: `var<workgroup> qs: array<f32, 256>;
var<workgroup> ks: array<f32, 1024>;
var<workgroup> ss: array<f32, 1024>;
var<workgroup> m_s: array<f32, 16>;
var<workgroup> l_s: array<f32, 16>;
var<workgroup> c_s: array<f32, 16>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.bc * P.tiles_q) { return; }
  let bt = P.b0 + wg / P.tiles_q;
  let q_first = P.q0 + (wg % P.tiles_q) * 16u;
  let q_end = P.q0 + P.qc;
  let k_end = P.k0 + P.kc;
  let is_first = (P.flags & 1u) != 0u;
  let is_last = (P.flags & 2u) != 0u;
  let row = li / 16u;
  let lane = li % 16u;
  if (li < 16u) {
    var m = ${NEG};
    var l = 0.0;
    if (!is_first && q_first + li < q_end) {
      let j = (bt * P.NQ + q_first + li) * 2u;
      m = ld_ml(j);
      l = ld_ml(j + 1u);
    }
    m_s[li] = m;
    l_s[li] = l;
  }
  for (var kt = P.k0; kt < k_end; kt += 64u) {
    // scores for (row, keys lane + 16j)
    var s = vec4f(0.0);
    for (var d0 = 0u; d0 < P.D; d0 += 16u) {
      let d = d0 + lane;
      var qv = 0.0;
      if (q_first + row < q_end && d < P.D) { qv = ld_q((bt * P.NQ + q_first + row) * P.D + d); }
      qs[li] = qv;
      for (var q = 0u; q < 4u; q++) {
        let j = row + 16u * q;
        var kv = 0.0;
        if (kt + j < k_end && d < P.D) { kv = ld_k((bt * P.NK + kt + j) * P.D + d); }
        ks[j * 16u + lane] = kv;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < 16u; dd++) {
        s += qs[row * 16u + dd] * vec4f(ks[lane * 16u + dd], ks[(lane + 16u) * 16u + dd], ks[(lane + 32u) * 16u + dd], ks[(lane + 48u) * 16u + dd]);
      }
      workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
      let col = lane + 16u * j;
      ss[row * 64u + col] = select(${NEG}, s[j] * P.scale, kt + col < k_end);
    }
    workgroupBarrier();
    if (li < 16u) {
      let m_old = m_s[li];
      var mx = m_old;
      for (var j = 0u; j < 64u; j++) { mx = max(mx, ss[li * 64u + j]); }
      var sum = 0.0;
      for (var j = 0u; j < 64u; j++) {
        let p = select(0.0, exp(ss[li * 64u + j] - mx), kt + j < k_end);
        ss[li * 64u + j] = p;
        sum += p;
      }
      let c = exp(m_old - mx);
      l_s[li] = l_s[li] * c + sum;
      m_s[li] = mx;
      c_s[li] = c;
    }
    workgroupBarrier();
    let nk = min(64u, k_end - kt);
    let fresh = is_first && kt == P.k0;
    let finish = is_last && kt + 64u >= k_end;
    for (var d = li; d < P.D; d += 256u) {
      // Zeroed explicitly: some compilers hoist a loop-local array and skip its implicit zero-init per iteration.
      var acc: array<f32, 16>;
      for (var r = 0u; r < 16u; r++) { acc[r] = 0.0; }
      for (var j = 0u; j < nk; j++) {
        let vv = ld_v((bt * P.NK + kt + j) * P.D + d);
        for (var r = 0u; r < 16u; r++) { acc[r] += ss[r * 64u + j] * vv; }
      }
      for (var r = 0u; r < 16u; r++) {
        if (q_first + r >= q_end) { break; }
        let idx = (bt * P.NQ + q_first + r) * P.D + d;
        var o = acc[r];
        if (!fresh) { o += ld_out(idx) * c_s[r]; }
        if (finish) { o /= l_s[r]; }
        st_out(idx, o);
      }
    }
    workgroupBarrier();
  }
  if (!is_last && li < 16u && q_first + li < q_end) {
    let j = (bt * P.NQ + q_first + li) * 2u;
    st_ml(j, m_s[li]);
    st_ml(j + 1u, l_s[li]);
  }
}
`,
  }));
