// One kernel test harness: one case list per op (src/ops/), one generator, one tolerance rule, run against
// every backend (wasm simd and relaxed SIMD, 1 and 2 threads, unshared memory, Winograd forced on; WebGPU at
// the device's limits and with limits lowered until every op splits into many dispatches) with the reference
// backend as ground truth. Then the contract: every rule of every op's validate() throws the same
// AutoencoderKLError on every backend, the reference included. Backend-specific behaviour (memory growth,
// worker threads, dispatch counts, f16 storage) stays in wasm-backend.test.ts and webgpu-backend.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTIVATIONS, type DeviceBuffer, type Kernels } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { createWasmBackend } from "../src/backends/wasm/index.js";
import { createWebGPUBackend, type WebGPULimits } from "../src/backends/webgpu/index.js";
import { AutoencoderKLError } from "../src/errors.js";
import { OPS, type OpArgs, type OpName } from "../src/ops/registry.js";
import { generator } from "./helpers/random.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";
import { acquireTestGPU } from "./helpers/webgpu-env.js";

const relaxed = enableRelaxedSimd();
if (!relaxed.ok) console.warn(`kernel-ops: skipping the relaxed-SIMD backends: ${relaxed.reason}`);
const gpuEnv = await acquireTestGPU();
if (gpuEnv.reason) console.warn(`kernel-ops: skipping the WebGPU backends: ${gpuEnv.reason}`);

// ---- the generator ------------------------------------------------------------------------------------

// one stream for the whole case list
const gen = generator(2024);

// ---- the tolerance rule -------------------------------------------------------------------------------

/**
 * Per element: |got − want| ≤ eps · √terms · |want| + atol, with atol = max(the case's atol, the backend's).
 * eps is the backend's (f32 SIMD against the float64 reference: 2e-6; WGSL, whose exp/log are the driver's:
 * 1e-4); terms is the case's reduction length (rounding error grows with √terms); the case's atol defaults to
 * eps · √terms · max(1, max |want|), the scale of the output; cases with a wide dynamic range (activation
 * tails, softmax) set a tiny one so tails are checked relatively. Data movement is bit-exact.
 */
function expectClose(got: Float32Array, want: Float32Array, be: { eps: number; atol?: number }, c: Case): void {
  expect(got.length).toBe(want.length);
  if (c.exact) {
    for (let i = 0; i < want.length; i++) {
      if (!Object.is(got[i], want[i])) expect.fail(`${c.name}: element ${i}: got ${got[i]}, want ${want[i]} (exact)`);
    }
    return;
  }
  let max = 0;
  for (const v of want) if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
  const tol = be.eps * Math.sqrt(c.terms ?? 1);
  const atol = Math.max(c.atol ?? tol * Math.max(1, max), be.atol ?? 0);
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= tol * Math.abs(want[i]) + atol) && !(got[i] === want[i])) {
      expect.fail(`${c.name}: element ${i}: got ${got[i]}, want ${want[i]} (diff ${d} > ${tol} · |want| + ${atol})`);
    }
  }
}

// ---- the case lists -----------------------------------------------------------------------------------

interface Case {
  op: OpName;
  name: string;
  /** Host data of every buffer the op touches, by name; `result` is read back and compared. */
  inputs: Record<string, Float32Array>;
  result: string;
  args: (b: Record<string, DeviceBuffer>) => unknown;
  terms?: number;
  atol?: number;
  exact?: boolean;
  /** Only on backends with this tag (e.g. "winograd"). */
  needs?: string;
  /** Elements one workgroup must see at once (a softmax row): backends with a smaller binding limit skip it. */
  rowElements?: number;
}

const cases: Case[] = [];
function add<K extends OpName>(
  op: K,
  name: string,
  inputs: Record<string, Float32Array>,
  args: (b: Record<string, DeviceBuffer>) => OpArgs<K>,
  o: Partial<Case> = {},
): void {
  cases.push({ op, name: `${op} ${name}`, inputs, result: "out", args, ...o });
}

// conv2d: [batch, C, H, W, O, KH, KW, stride, padTop, padBottom, padLeft, padRight]
type Conv = [number, number, number, number, number, number, number, number, number, number, number, number];
function conv(c: Conv, o: { bias?: boolean; residual?: boolean; needs?: string; upsample?: boolean } = {}): void {
  const [N, C, H, W, O, KH, KW, S, pt, pb, pl, pr] = c;
  const up = o.upsample ? 2 : 1;
  const OH = Math.floor((up * H + pt + pb - KH) / S) + 1,
    OW = Math.floor((up * W + pl + pr - KW) / S) + 1;
  const outN = N * O * OH * OW;
  const inputs: Record<string, Float32Array> = {
    x: gen.data(N * C * H * W),
    w: gen.data(O * C * KH * KW, -0.5, 0.5),
    out: new Float32Array(outN),
  };
  if (o.bias !== false) inputs.b = gen.data(O);
  if (o.residual) inputs.r = gen.data(outN);
  add(
    "conv2d",
    `${c.join(",")} bias=${o.bias !== false} residual=${!!o.residual}${o.upsample ? " upsample" : ""}${o.needs ? ` (${o.needs})` : ""}`,
    inputs,
    (b) => ({
      x: b.x,
      weight: b.w,
      bias: b.b ?? null,
      residual: b.r ?? null,
      out: b.out,
      batch: N,
      inChannels: C,
      inHeight: H,
      inWidth: W,
      outChannels: O,
      kernelH: KH,
      kernelW: KW,
      stride: S,
      padTop: pt,
      padBottom: pb,
      padLeft: pl,
      padRight: pr,
      outHeight: OH,
      outWidth: OW,
      ...(o.upsample ? { upsample: true } : {}),
    }),
    { terms: C * KH * KW, needs: o.needs },
  );
}
// 3×3 pad 1 (resnets, mid block), odd sizes and channels
for (const c of [
  [1, 3, 15, 23, 8],
  [2, 13, 7, 5, 6],
  [1, 8, 30, 46, 3],
  [1, 4, 16, 16, 17],
  [1, 5, 1, 1, 5],
  [1, 32, 9, 64, 12],
]) {
  conv([c[0], c[1], c[2], c[3], c[4], 3, 3, 1, 1, 1, 1, 1]);
}
// Winograd F(2×2, 3×3) and F(4×4, 3×3), where the backend sends every 3×3 stride-1 pad-1 conv through it: sizes
// that are not multiples of either tile, partial groups of 8 tiles, several units per tile row (131 and 400
// channels: the transformed input of a unit is capped), channels that are not multiples of the 6-channel blocks
for (const [i, c] of [
  [1, 5, 15, 23, 7],
  [1, 3, 1, 1, 2],
  [2, 6, 2, 3, 13],
  [1, 17, 8, 8, 6],
  [2, 9, 11, 40, 11],
  [1, 131, 5, 211, 10],
  [1, 1, 4, 17, 1],
  [2, 7, 13, 18, 9],
  [1, 37, 21, 33, 14],
  [1, 400, 5, 190, 7],
  [2, 4, 3, 2, 5],
].entries()) {
  conv([c[0], c[1], c[2], c[3], c[4], 3, 3, 1, 1, 1, 1, 1], {
    residual: i % 2 === 0,
    bias: i !== 3,
    needs: "winograd",
  });
}
// Upsample2D: 3×3 pad 1 on the input upsampled ×2, never formed. Direct by default; with the "winograd" tag
// F(2×2) (upsampling while staging rows) or F(4×4) (phase kernels on the low-resolution input, 1, 2 or 4
// phases per pass, or staged as F(2×2)): odd sizes, partial groups of 8 tiles, several units per tile row,
// channels off the 6-blocks
for (const [i, c] of [
  [1, 5, 7, 11, 7],
  [2, 9, 3, 5, 13],
  [1, 17, 8, 9, 6],
  [1, 1, 1, 1, 1],
  [1, 131, 3, 40, 10],
  [2, 6, 4, 33, 12],
  [1, 400, 2, 95, 5],
].entries()) {
  for (const needs of [undefined, "winograd"])
    conv([c[0], c[1], c[2], c[3], c[4], 3, 3, 1, 1, 1, 1, 1], { upsample: true, bias: i !== 1, needs });
}
// Downsample2D's stride 2 with (0, 1, 0, 1) padding; 1×1 shortcuts; general kernels, strides, asymmetric pads
for (const c of [
  [1, 8, 16, 16, 8],
  [2, 5, 15, 23, 7],
  [1, 3, 30, 46, 9],
])
  conv([c[0], c[1], c[2], c[3], c[4], 3, 3, 2, 0, 1, 0, 1]);
for (const c of [
  [1, 5, 15, 23, 7],
  [2, 8, 3, 3, 8],
  [1, 16, 4, 4, 32],
])
  conv([c[0], c[1], c[2], c[3], c[4], 1, 1, 1, 0, 0, 0, 0]);
conv([1, 5, 15, 23, 7, 1, 1, 1, 0, 0, 0, 0], { bias: false });
conv([1, 4, 9, 11, 6, 3, 3, 1, 1, 1, 1, 1], { bias: false });
for (const c of [
  [1, 3, 11, 13, 5, 2, 5, 3, 1, 0, 2, 1],
  [2, 4, 9, 10, 6, 5, 3, 1, 2, 2, 0, 3],
  [1, 6, 8, 8, 4, 1, 1, 2, 0, 0, 0, 0],
  [1, 2, 7, 9, 3, 1, 1, 1, 1, 0, 0, 1],
  [1, 3, 12, 12, 5, 4, 4, 4, 0, 0, 0, 0],
  [1, 4, 10, 14, 4, 3, 3, 3, 2, 1, 1, 2],
] as Conv[])
  conv(c);
// fused residual; many input channels (the reduction is split into chunks)
conv([1, 6, 15, 23, 6, 3, 3, 1, 1, 1, 1, 1], { residual: true });
conv([2, 7, 5, 9, 5, 1, 1, 1, 0, 0, 0, 0], { residual: true });
conv([1, 3, 8, 8, 4, 3, 3, 2, 0, 1, 0, 1], { residual: true, bias: false });
conv([1, 300, 5, 64, 8, 3, 3, 1, 1, 1, 1, 1], { residual: true });
conv([2, 280, 6, 70, 7, 3, 3, 2, 0, 1, 0, 1], { residual: true });
conv([1, 600, 9, 17, 9, 1, 1, 1, 0, 0, 0, 0], { residual: true });
conv([1, 37, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1], { residual: true });
// random shapes
for (let t = 0; t < 12; t++) {
  const KH = gen.int(1, 4),
    KW = gen.int(1, 4),
    S = gen.int(1, 3);
  conv(
    [
      gen.int(1, 2),
      gen.int(1, 9),
      gen.int(KH, 20),
      gen.int(KW, 27),
      gen.int(1, 11),
      KH,
      KW,
      S,
      gen.int(0, 2),
      gen.int(0, 2),
      gen.int(0, 2),
      gen.int(0, 2),
    ],
    { residual: t % 3 === 0, bias: t % 4 !== 1 },
  );
}

// groupNorm: every fused activation, odd sizes, groups spanning several reduction slices, in place, large mean
for (const act of ACTIVATIONS) {
  for (const [batch, channels, spatial, groups] of [
    [1, 12, 345, 4],
    [2, 8, 7, 8],
    [1, 6, 30 * 46, 3],
    [1, 32, 1, 32],
    [2, 6, 35, 3],
  ]) {
    const n = batch * channels * spatial;
    add(
      "groupNorm",
      `${act} ${[batch, channels, spatial, groups]}`,
      {
        x: gen.data(n, -3, 5),
        g: gen.data(channels, 0.5, 1.5),
        b: gen.data(channels, -0.5, 0.5),
        out: new Float32Array(n),
      },
      (b) => ({
        x: b.x,
        gamma: b.g,
        beta: b.b,
        out: b.out,
        batch,
        channels,
        spatial,
        groups,
        eps: 1e-6,
        activation: act,
      }),
    );
  }
}
for (const [channels, spatial, groups, lo, hi] of [
  [4, 1500, 2, -1, 1],
  [1, 5000, 1, -1, 1],
  [8, 128 * 128, 2, 99, 101],
]) {
  // in place; mean 100 with std ~0.58 is where an f32 running sum would lose digits
  add(
    "groupNorm",
    `in place ${[channels, spatial, groups]} values in [${lo}, ${hi})`,
    { x: gen.data(channels * spatial, lo, hi), g: gen.data(channels, 0.5, 1.5), b: gen.data(channels, -0.5, 0.5) },
    (b) => ({
      x: b.x,
      gamma: b.g,
      beta: b.b,
      out: b.x,
      batch: 1,
      channels,
      spatial,
      groups,
      eps: 1e-6,
      activation: "silu" as const,
    }),
    { result: "x", terms: 10 },
  );
}

// channelAffine: every activation, separate and in place
for (const act of ACTIVATIONS) {
  const [batch, channels, spatial] = [2, 5, 23];
  const n = batch * channels * spatial;
  const inputs = {
    x: gen.data(n, -4, 4),
    s: gen.data(batch * channels),
    t: gen.data(batch * channels),
    out: new Float32Array(n),
  };
  add("channelAffine", act, inputs, (b) => ({
    x: b.x,
    scale: b.s,
    shift: b.t,
    out: b.out,
    batch,
    channels,
    spatial,
    activation: act,
  }));
  add(
    "channelAffine",
    `${act} in place`,
    { x: inputs.x, s: inputs.s, t: inputs.t },
    (b) => ({ x: b.x, scale: b.s, shift: b.t, out: b.x, batch, channels, spatial, activation: act }),
    { result: "x" },
  );
}

// activation: a dense sweep plus the special points (0, Mish's softplus threshold ±20, far tails), in place too
{
  const sweep = Array.from({ length: 2001 }, (_, i) => -25 + i * 0.025);
  const special = [
    0, -0, 20, -20, 19.999, 20.001, 1e-8, -1e-8, 88, -88, 88.5, -88.5, 100, -100, 1e4, -1e4, 3.4e38, -3.4e38,
  ];
  const x = Float32Array.from([...sweep, ...special]);
  for (const act of ACTIVATIONS) {
    // relative per element (the reference forms GELU as 1 + erf in f64, which resolves only ~1e-16 absolute)
    const o = { atol: act === "gelu" ? 1e-15 : 1e-30 };
    add(
      "activation",
      `${act} sweep`,
      { x, out: new Float32Array(x.length) },
      (b) => ({ x: b.x, out: b.out, length: x.length, activation: act }),
      o,
    );
    add("activation", `${act} in place`, { x }, (b) => ({ x: b.x, out: b.x, length: x.length, activation: act }), {
      ...o,
      result: "x",
    });
  }
  for (const length of [1, 2, 3, 4, 5, 7, 15, 16, 17, 33, 1001]) {
    const y = gen.data(length, -6, 6);
    for (const act of ["silu", "gelu"] as const) {
      add(
        "activation",
        `${act} length ${length}`,
        { x: y, out: new Float32Array(length) },
        (b) => ({ x: b.x, out: b.out, length, activation: act }),
        { atol: 1e-15 },
      );
    }
    add(
      "add",
      `length ${length}`,
      { a: gen.data(length), b: gen.data(length), out: new Float32Array(length) },
      (b) => ({ a: b.a, b: b.b, out: b.out, length }),
      { exact: true },
    );
  }
}
// add: every aliasing of out
{
  const a = gen.data(1001),
    b = gen.data(1001);
  add("add", "out = a", { a, b }, (x) => ({ a: x.a, b: x.b, out: x.a, length: 1001 }), { result: "a", exact: true });
  add("add", "out = b", { a, b }, (x) => ({ a: x.a, b: x.b, out: x.b, length: 1001 }), { result: "b", exact: true });
  add("add", "out = a = b", { a }, (x) => ({ a: x.a, b: x.a, out: x.a, length: 1001 }), { result: "a", exact: true });
}

// linear and matmul: random shapes, with and without bias, batched, transposeB both ways, alpha
for (let t = 0; t < 10; t++) {
  const rows = gen.int(1, 37),
    inF = gen.int(1, 70),
    outF = gen.int(1, 33);
  const inputs: Record<string, Float32Array> = {
    x: gen.data(rows * inF),
    w: gen.data(outF * inF),
    out: new Float32Array(rows * outF),
  };
  if (t % 2) inputs.b = gen.data(outF);
  add(
    "linear",
    `${[rows, inF, outF]} bias=${t % 2 === 1}`,
    inputs,
    (b) => ({ x: b.x, weight: b.w, bias: b.b ?? null, out: b.out, rows, inFeatures: inF, outFeatures: outF }),
    { terms: inF },
  );
}
add(
  "linear",
  "301x96 -> 70",
  { x: gen.data(301 * 96), w: gen.data(70 * 96), b: gen.data(70), out: new Float32Array(301 * 70) },
  (b) => ({ x: b.x, weight: b.w, bias: b.b, out: b.out, rows: 301, inFeatures: 96, outFeatures: 70 }),
  { terms: 96 },
);
for (let t = 0; t < 12; t++) {
  const batch = gen.int(1, 3),
    m = gen.int(1, 40),
    n = gen.int(1, 40),
    k = gen.int(1, 45);
  const transposeB = t % 2 === 1,
    alpha = t % 3 === 0 ? 1 : 0.125 + gen.next();
  add(
    "matmul",
    `${[batch, m, n, k]} transposeB=${transposeB} alpha=${alpha.toFixed(3)}`,
    { a: gen.data(batch * m * k), b: gen.data(batch * k * n), out: new Float32Array(batch * m * n) },
    (b) => ({ a: b.a, b: b.b, out: b.out, batch, m, n, k, transposeB, alpha }),
    { terms: k },
  );
}

// softmax: -inf logits (masks) give exactly 0; odd sizes, large logits, in place
{
  const x = Float32Array.from([1, -Infinity, 2, -Infinity, 0.5, -Infinity, -Infinity, 3, 1, -Infinity]);
  add(
    "softmax",
    "with -inf",
    { x, out: new Float32Array(x.length) },
    (b) => ({ x: b.x, out: b.out, rows: 1, cols: x.length }),
    { atol: 0 },
  );
  for (const [rows, cols] of [
    [1, 1],
    [3, 5],
    [7, 300],
    [2, 4096],
    [5, 17],
    [1, 1000],
  ]) {
    const y = gen.data(rows * cols, -30, 30);
    add(
      "softmax",
      `${rows}x${cols}`,
      { x: y, out: new Float32Array(rows * cols) },
      (b) => ({ x: b.x, out: b.out, rows, cols }),
      { atol: 1e-12, rowElements: cols },
    );
    add("softmax", `${rows}x${cols} in place`, { x: y }, (b) => ({ x: b.x, out: b.x, rows, cols }), {
      atol: 1e-12,
      result: "x",
      rowElements: cols,
    });
  }
}

// attention: blocked online softmax across key blocks, odd sizes, head dims 3 to 300
for (const [batch, queries, keys, dim] of [
  [1, 1, 1, 1],
  [1, 7, 5, 3],
  [2, 30, 130, 9],
  [1, 50, 300, 17],
  [1, 25, 257, 64],
  [2, 3, 129, 5],
  [1, 37, 70, 20],
  [1, 5, 9, 300],
]) {
  const scale = 1 / Math.sqrt(dim);
  add(
    "attention",
    `${[batch, queries, keys, dim]}`,
    {
      q: gen.data(batch * queries * dim, -2, 2),
      k: gen.data(batch * keys * dim, -2, 2),
      v: gen.data(batch * keys * dim),
      out: new Float32Array(batch * queries * dim),
    },
    (b) => ({ q: b.q, k: b.k, v: b.v, out: b.out, batch, queries, keys, dim, scale }),
    { terms: 4 },
  );
}

// data movement: bit-exact
for (const [planes, height, width] of [
  [1, 1, 1],
  [3, 5, 7],
  [2, 15, 23],
  [1, 4, 8],
]) {
  const n = planes * height * width;
  add(
    "upsampleNearest2x",
    `${[planes, height, width]}`,
    { x: gen.data(n), out: new Float32Array(4 * n) },
    (b) => ({ x: b.x, out: b.out, planes, height, width }),
    { exact: true },
  );
}
for (const [batch, rows, cols] of [
  [1, 1, 1],
  [2, 5, 7],
  [1, 4, 4],
  [3, 9, 13],
  [1, 64, 3],
  [1, 3, 64],
  [2, 33, 47],
]) {
  const n = batch * rows * cols;
  add(
    "transpose",
    `${[batch, rows, cols]}`,
    { x: gen.data(n), out: new Float32Array(n) },
    (b) => ({ x: b.x, out: b.out, batch, rows, cols }),
    { exact: true },
  );
}
for (const [rows, cols, xOffset, xRowStride, outOffset, outRowStride] of [
  [7, 9, 3, 25, 11, 31],
  [2, 1000, 1000, 1000, 1, 1500],
  [1, 1, 0, 1, 0, 1],
  [13, 20, 4, 23, 0, 20],
]) {
  add(
    "copy",
    `${[rows, cols, xOffset, xRowStride, outOffset, outRowStride]}`,
    { x: gen.data(xOffset + rows * xRowStride), out: gen.data(outOffset + rows * outRowStride) },
    (b) => ({ x: b.x, out: b.out, rows, cols, xOffset, xRowStride, outOffset, outRowStride }),
    { exact: true },
  );
}

// ---- the backends -------------------------------------------------------------------------------------

interface Backend {
  name: string;
  make: () => Promise<Kernels>;
  eps: number;
  /** Absolute error the backend may add everywhere (WGSL transcendentals lose the far tails). */
  atol?: number;
  skip?: string;
  tags?: string[];
  /** The longest row a single workgroup can bind (lowered WebGPU limits), else unlimited. */
  maxRowElements?: number;
}
const LOWERED: Partial<WebGPULimits> = { maxStorageBufferBindingSize: 2048, maxComputeWorkgroupsPerDimension: 2 };
const noRelaxed = relaxed.ok ? undefined : relaxed.reason;
// an adapter hands out one device: every WebGPU backend here shares it (passing `device` leaves it undestroyed)
let device: Promise<GPUDevice> | undefined;
const gpu = async (limits?: Partial<WebGPULimits>) => {
  device ??= createWebGPUBackend({ adapter: gpuEnv.adapter }).then((b) => b.device);
  return createWebGPUBackend({ device: await device, limits });
};
const backends: Backend[] = [
  { name: "wasm simd", make: () => createWasmBackend({ relaxed: false }), eps: 2e-6 },
  {
    name: "wasm simd, 2 threads",
    make: () => createWasmBackend({ relaxed: false, threads: 2, parallelThresholdNs: 0 }),
    eps: 2e-6,
  },
  {
    name: "wasm simd, unshared memory",
    make: () => createWasmBackend({ relaxed: false, sharedMemory: false }),
    eps: 2e-6,
  },
  ...([2, 4] as const).flatMap((tile) => [
    {
      name: `wasm simd, Winograd F(${tile}x${tile}) for every 3x3`,
      make: () => createWasmBackend({ relaxed: false, winogradMinChannels: 1, winogradTile: tile }),
      eps: 2e-6,
      tags: ["winograd"],
    },
    {
      name: `wasm simd, 2 threads, Winograd F(${tile}x${tile}) for every 3x3`,
      make: () =>
        createWasmBackend({
          relaxed: false,
          threads: 2,
          parallelThresholdNs: 0,
          winogradMinChannels: 1,
          winogradTile: tile,
        }),
      eps: 2e-6,
      tags: ["winograd"],
    },
  ]),
  { name: "wasm relaxed-simd", make: () => createWasmBackend({ relaxed: true }), eps: 2e-6, skip: noRelaxed },
  {
    name: "wasm relaxed-simd, 2 threads",
    make: () => createWasmBackend({ relaxed: true, threads: 2, parallelThresholdNs: 0 }),
    eps: 2e-6,
    skip: noRelaxed,
  },
  ...([2, 4] as const).map((tile) => ({
    name: `wasm relaxed-simd, Winograd F(${tile}x${tile}) for every 3x3`,
    make: () => createWasmBackend({ relaxed: true, winogradMinChannels: 1, winogradTile: tile }),
    eps: 2e-6,
    tags: ["winograd"],
    skip: noRelaxed,
  })),
  ...([1, 2, "staged"] as const).map((np) => ({
    name: `wasm simd, ${np === 2 ? 1 : 2} thread(s), Winograd F(4x4) for every 3x3, upsampling ${np === "staged" ? "while staging" : `${np} phase(s) a pass`}`,
    make: () =>
      createWasmBackend({
        relaxed: false,
        threads: np === 2 ? 1 : 2,
        parallelThresholdNs: 0,
        winogradMinChannels: 1,
        winogradTile: 4,
        upsamplePhases: np,
      }),
    eps: 2e-6,
    tags: ["winograd"],
  })),
  {
    name: "wasm relaxed-simd, 2 threads, Winograd F(4x4) for every 3x3",
    make: () =>
      createWasmBackend({ relaxed: true, threads: 2, parallelThresholdNs: 0, winogradMinChannels: 1, winogradTile: 4 }),
    eps: 2e-6,
    tags: ["winograd"],
    skip: noRelaxed,
  },
  { name: "webgpu", make: () => gpu(), eps: 1e-4, atol: 1e-5, skip: gpuEnv.reason },
  {
    name: "webgpu, lowered limits",
    make: () => gpu(LOWERED),
    eps: 1e-4,
    atol: 1e-5,
    maxRowElements: 400,
    skip: gpuEnv.reason,
  },
];

const ref = new ReferenceKernels();

async function runCase(k: Kernels, c: Case): Promise<Float32Array> {
  const b: Record<string, DeviceBuffer> = {};
  for (const [name, data] of Object.entries(c.inputs)) {
    b[name] = k.alloc(data.length);
    k.write(b[name], data);
  }
  const op = k[c.op] as (a: unknown) => unknown;
  await op.call(k, c.args(b));
  const got = await k.read(b[c.result]);
  for (const buf of Object.values(b)) k.free(buf);
  return got;
}

const want = new Map<Case, Float32Array>();
async function expected(c: Case): Promise<Float32Array> {
  let w = want.get(c);
  if (!w) want.set(c, (w = await runCase(ref, c)));
  return w;
}

it("every op in the registry has cases and contract rules", () => {
  for (const op of Object.keys(OPS)) {
    expect(
      cases.some((c) => c.op === op),
      `${op} cases`,
    ).toBe(true);
    expect(
      rules.some((r) => r.op === op),
      `${op} rules`,
    ).toBe(true);
  }
});

for (const be of backends) {
  describe.skipIf(be.skip !== undefined)(`kernels on ${be.name}`, () => {
    let k: Kernels;
    beforeAll(async () => {
      k = await be.make();
    });
    afterAll(() => k?.dispose());

    for (const op of Object.keys(OPS) as OpName[]) {
      const list = cases.filter((c) => c.op === op && (c.needs === undefined || be.tags?.includes(c.needs)));
      const fits = list.filter((c) => (c.rowElements ?? 0) <= (be.maxRowElements ?? Infinity));
      if (fits.length < list.length)
        console.warn(
          `kernel-ops: ${be.name}: ${list.length - fits.length} ${op} case(s) skipped: a row exceeds the binding limit`,
        );
      list.splice(0, list.length, ...fits);
      if (list.length === 0) continue;
      it(`${op} (${list.length} cases)`, async () => {
        for (const c of list) expectClose(await runCase(k, c), await expected(c), be, c);
      });
    }
  });
}

// ---- the contract ---------------------------------------------------------------------------------------

/** A buffer factory per call, so every rule sees fresh, owned buffers of the sizes it names. */
type Alloc = (n: number) => DeviceBuffer;
interface Rule {
  op: OpName;
  rule: string;
  message: RegExp;
  /** `h` allocates f16 buffers (allocHalf). */
  args: (a: Alloc, h: Alloc) => unknown;
}
const conv2dArgs = (a: Alloc, o: Record<string, unknown> = {}) => ({
  x: a(2 * 3 * 4 * 4),
  weight: a(5 * 3 * 9),
  bias: a(5),
  residual: null,
  out: a(2 * 5 * 4 * 4),
  batch: 2,
  inChannels: 3,
  inHeight: 4,
  inWidth: 4,
  outChannels: 5,
  kernelH: 3,
  kernelW: 3,
  stride: 1,
  padTop: 1,
  padBottom: 1,
  padLeft: 1,
  padRight: 1,
  outHeight: 4,
  outWidth: 4,
  ...o,
});
const gnArgs = (a: Alloc, o: Record<string, unknown> = {}) => ({
  x: a(2 * 4 * 5),
  gamma: a(4),
  beta: a(4),
  out: a(2 * 4 * 5),
  batch: 2,
  channels: 4,
  spatial: 5,
  groups: 2,
  eps: 1e-6,
  activation: "silu",
  ...o,
});
const rules: Rule[] = [
  {
    op: "conv2d",
    rule: "batch 0",
    message: /batch must be a positive integer, got 0/,
    args: (a) => conv2dArgs(a, { batch: 0 }),
  },
  {
    op: "conv2d",
    rule: "fractional size",
    message: /inChannels must be a positive integer, got 2.5/,
    args: (a) => conv2dArgs(a, { inChannels: 2.5 }),
  },
  {
    op: "conv2d",
    rule: "negative padding",
    message: /padLeft must be a non-negative integer/,
    args: (a) => conv2dArgs(a, { padLeft: -1 }),
  },
  {
    op: "conv2d",
    rule: "output size",
    message: /output 3x4 does not match.*expected 4x4/,
    args: (a) => conv2dArgs(a, { outHeight: 3 }),
  },
  {
    op: "conv2d",
    rule: "upsample: output of the input upsampled",
    message: /output 4x4 does not match input 4x4 upsampled x2, .*expected 8x8/,
    args: (a) => conv2dArgs(a, { upsample: true }),
  },
  {
    op: "conv2d",
    rule: "upsample: stride 1 only",
    message: /upsample needs a 3x3 kernel at stride 1 and no residual; got 3x3, stride 2/,
    args: (a) => conv2dArgs(a, { upsample: true, stride: 2, outHeight: 4, outWidth: 4, out: a(2 * 5 * 4 * 4) }),
  },
  {
    op: "conv2d",
    rule: "upsample: no residual",
    message: /upsample needs a 3x3 kernel at stride 1 and no residual; got 3x3, stride 1 and a residual/,
    args: (a) =>
      conv2dArgs(a, { upsample: true, outHeight: 8, outWidth: 8, out: a(2 * 5 * 8 * 8), residual: a(2 * 5 * 8 * 8) }),
  },
  {
    op: "conv2d",
    rule: "out aliasing x",
    message: /out must not alias x/,
    args: (a) => {
      const x = a(2 * 5 * 4 * 4);
      return conv2dArgs(a, { x, out: x });
    },
  },
  {
    op: "conv2d",
    rule: "residual aliasing out",
    message: /out must not alias residual/,
    args: (a) => {
      const o = a(2 * 5 * 4 * 4);
      return conv2dArgs(a, { residual: o, out: o });
    },
  },
  {
    op: "conv2d",
    rule: "short weight",
    message: /weight holds 134 elements, needs 135/,
    args: (a) => conv2dArgs(a, { weight: a(134) }),
  },
  {
    op: "conv2d",
    rule: "short residual",
    message: /residual holds 1 elements, needs 160/,
    args: (a) => conv2dArgs(a, { residual: a(1) }),
  },
  {
    op: "groupNorm",
    rule: "groups not dividing channels",
    message: /groups \(3\) must divide channels \(4\)/,
    args: (a) => gnArgs(a, { groups: 3 }),
  },
  {
    op: "groupNorm",
    rule: "negative eps",
    message: /eps must be a non-negative number/,
    args: (a) => gnArgs(a, { eps: -1 }),
  },
  {
    op: "groupNorm",
    rule: "unknown activation",
    message: /activation must be one of none, silu, mish, gelu, relu; got "swish"/,
    args: (a) => gnArgs(a, { activation: "swish" }),
  },
  {
    op: "groupNorm",
    rule: "out aliasing gamma",
    message: /out must not alias gamma/,
    args: (a) => {
      const g = a(40);
      return gnArgs(a, { gamma: g, out: g });
    },
  },
  { op: "groupNorm", rule: "short x", message: /x holds 39 elements, needs 40/, args: (a) => gnArgs(a, { x: a(39) }) },
  {
    op: "linear",
    rule: "out aliasing x",
    message: /out must not alias x/,
    args: (a) => {
      const x = a(12);
      return { x, weight: a(12), bias: null, out: x, rows: 3, inFeatures: 4, outFeatures: 3 };
    },
  },
  {
    op: "linear",
    rule: "rows 0",
    message: /rows must be a positive integer, got 0/,
    args: (a) => ({ x: a(12), weight: a(12), bias: null, out: a(9), rows: 0, inFeatures: 4, outFeatures: 3 }),
  },
  {
    op: "matmul",
    rule: "non-finite alpha",
    message: /alpha must be a finite number/,
    args: (a) => ({ a: a(6), b: a(6), out: a(4), batch: 1, m: 2, n: 2, k: 3, transposeB: false, alpha: NaN }),
  },
  {
    op: "matmul",
    rule: "out aliasing b",
    message: /out must not alias b/,
    args: (a) => {
      const b = a(6);
      return { a: a(6), b, out: b, batch: 1, m: 2, n: 2, k: 3, transposeB: false, alpha: 1 };
    },
  },
  {
    op: "softmax",
    rule: "cols 0",
    message: /cols must be a positive integer, got 0/,
    args: (a) => ({ x: a(4), out: a(4), rows: 4, cols: 0 }),
  },
  {
    op: "attention",
    rule: "non-finite scale",
    message: /scale must be a finite number/,
    args: (a) => ({ q: a(8), k: a(8), v: a(8), out: a(8), batch: 1, queries: 2, keys: 2, dim: 4, scale: Infinity }),
  },
  {
    op: "attention",
    rule: "out aliasing q",
    message: /out must not alias q/,
    args: (a) => {
      const q = a(8);
      return { q, k: a(8), v: a(8), out: q, batch: 1, queries: 2, keys: 2, dim: 4, scale: 1 };
    },
  },
  {
    op: "add",
    rule: "short b",
    message: /b holds 10 elements, needs 11/,
    args: (a) => ({ a: a(11), b: a(10), out: a(11), length: 11 }),
  },
  {
    op: "add",
    rule: "negative length",
    message: /length must be a non-negative integer, got -1/,
    args: (a) => ({ a: a(1), b: a(1), out: a(1), length: -1 }),
  },
  {
    op: "activation",
    rule: "unknown activation",
    message: /activation must be one of/,
    args: (a) => ({ x: a(4), out: a(4), length: 4, activation: "tanh" }),
  },
  {
    op: "upsampleNearest2x",
    rule: "out aliasing x",
    message: /out must not alias x/,
    args: (a) => {
      const x = a(16);
      return { x, out: x, planes: 1, height: 2, width: 2 };
    },
  },
  {
    op: "upsampleNearest2x",
    rule: "short out",
    message: /out holds 15 elements, needs 16/,
    args: (a) => ({ x: a(4), out: a(15), planes: 1, height: 2, width: 2 }),
  },
  {
    op: "transpose",
    rule: "out aliasing x",
    message: /out must not alias x/,
    args: (a) => {
      const x = a(4);
      return { x, out: x, batch: 1, rows: 2, cols: 2 };
    },
  },
  {
    op: "channelAffine",
    rule: "out aliasing scale",
    message: /out must not alias scale/,
    args: (a) => {
      const s = a(8);
      return { x: a(8), scale: s, shift: a(8), out: s, batch: 2, channels: 4, spatial: 1, activation: "none" };
    },
  },
  {
    op: "copy",
    rule: "out aliasing x",
    message: /out must not alias x/,
    args: (a) => {
      const x = a(10);
      return { x, out: x, rows: 1, cols: 2, xOffset: 0, xRowStride: 2, outOffset: 4, outRowStride: 2 };
    },
  },
  {
    op: "groupNorm",
    rule: "spatial 0",
    message: /spatial must be a positive integer, got 0/,
    args: (a) => gnArgs(a, { spatial: 0 }),
  },
  {
    op: "linear",
    rule: "short bias",
    message: /bias holds 2 elements, needs 3/,
    args: (a) => ({ x: a(12), weight: a(12), bias: a(2), out: a(9), rows: 3, inFeatures: 4, outFeatures: 3 }),
  },
  {
    op: "matmul",
    rule: "short a",
    message: /a holds 5 elements, needs 6/,
    args: (a) => ({ a: a(5), b: a(6), out: a(4), batch: 1, m: 2, n: 2, k: 3, transposeB: true, alpha: 1 }),
  },
  {
    op: "softmax",
    rule: "short out",
    message: /out holds 7 elements, needs 8/,
    args: (a) => ({ x: a(8), out: a(7), rows: 2, cols: 4 }),
  },
  {
    op: "attention",
    rule: "keys 0",
    message: /keys must be a positive integer, got 0/,
    args: (a) => ({ q: a(8), k: a(8), v: a(8), out: a(8), batch: 1, queries: 2, keys: 0, dim: 4, scale: 1 }),
  },
  {
    op: "attention",
    rule: "short v",
    message: /v holds 7 elements, needs 8/,
    args: (a) => ({ q: a(8), k: a(8), v: a(7), out: a(8), batch: 1, queries: 2, keys: 2, dim: 4, scale: 1 }),
  },
  {
    op: "activation",
    rule: "short x",
    message: /x holds 3 elements, needs 4/,
    args: (a) => ({ x: a(3), out: a(4), length: 4, activation: "relu" }),
  },
  {
    op: "upsampleNearest2x",
    rule: "planes 0",
    message: /planes must be a positive integer, got 0/,
    args: (a) => ({ x: a(4), out: a(16), planes: 0, height: 2, width: 2 }),
  },
  {
    op: "transpose",
    rule: "short out",
    message: /out holds 5 elements, needs 6/,
    args: (a) => ({ x: a(6), out: a(5), batch: 1, rows: 2, cols: 3 }),
  },
  {
    op: "channelAffine",
    rule: "unknown activation",
    message: /activation must be one of/,
    args: (a) => ({
      x: a(8),
      scale: a(8),
      shift: a(8),
      out: a(8),
      batch: 2,
      channels: 4,
      spatial: 1,
      activation: "elu",
    }),
  },
  {
    op: "channelAffine",
    rule: "short shift",
    message: /shift holds 7 elements, needs 8/,
    args: (a) => ({
      x: a(8),
      scale: a(8),
      shift: a(7),
      out: a(8),
      batch: 2,
      channels: 4,
      spatial: 1,
      activation: "none",
    }),
  },
  {
    op: "copy",
    rule: "negative offset",
    message: /xOffset must be a non-negative integer, got -1/,
    args: (a) => ({
      x: a(10),
      out: a(10),
      rows: 1,
      cols: 2,
      xOffset: -1,
      xRowStride: 2,
      outOffset: 0,
      outRowStride: 2,
    }),
  },
  {
    op: "copy",
    rule: "rows past the end",
    message: /x holds 10 elements, needs 11/,
    args: (a) => ({ x: a(10), out: a(20), rows: 2, cols: 3, xOffset: 0, xRowStride: 8, outOffset: 0, outRowStride: 3 }),
  },
  // f16 buffers (allocHalf) are weights: conv2d's and linear's `weight` take them, every other argument refuses
  ...(
    [
      ["conv2d", "x", (a, h) => conv2dArgs(a, { x: h(2 * 3 * 4 * 4) })],
      ["conv2d", "bias", (a, h) => conv2dArgs(a, { bias: h(5) })],
      ["conv2d", "residual", (a, h) => conv2dArgs(a, { residual: h(2 * 5 * 4 * 4) })],
      ["conv2d", "out", (a, h) => conv2dArgs(a, { out: h(2 * 5 * 4 * 4) })],
      [
        "linear",
        "x",
        (a, h) => ({ x: h(6), weight: h(6), bias: a(2), out: a(4), rows: 2, inFeatures: 3, outFeatures: 2 }),
      ],
      [
        "linear",
        "bias",
        (a, h) => ({ x: a(6), weight: h(6), bias: h(2), out: a(4), rows: 2, inFeatures: 3, outFeatures: 2 }),
      ],
      [
        "linear",
        "out",
        (a, h) => ({ x: a(6), weight: a(6), bias: null, out: h(4), rows: 2, inFeatures: 3, outFeatures: 2 }),
      ],
      [
        "matmul",
        "b",
        (a, h) => ({ a: a(6), b: h(6), out: a(4), batch: 1, m: 2, n: 2, k: 3, transposeB: true, alpha: 1 }),
      ],
      ["groupNorm", "gamma", (a, h) => gnArgs(a, { gamma: h(4) })],
      ["softmax", "x", (a, h) => ({ x: h(6), out: a(6), rows: 2, cols: 3 })],
      [
        "attention",
        "k",
        (a, h) => ({ q: a(6), k: h(6), v: a(6), out: a(6), batch: 1, queries: 2, keys: 2, dim: 3, scale: 1 }),
      ],
      ["add", "b", (a, h) => ({ a: a(4), b: h(4), out: a(4), length: 4 })],
      ["activation", "x", (a, h) => ({ x: h(4), out: a(4), length: 4, activation: "relu" })],
      ["upsampleNearest2x", "x", (a, h) => ({ x: h(4), out: a(16), planes: 1, height: 2, width: 2 })],
      ["transpose", "x", (a, h) => ({ x: h(6), out: a(6), batch: 1, rows: 2, cols: 3 })],
      [
        "channelAffine",
        "scale",
        (a, h) => ({
          x: a(8),
          scale: h(8),
          shift: a(8),
          out: a(8),
          batch: 2,
          channels: 4,
          spatial: 1,
          activation: "none",
        }),
      ],
      [
        "copy",
        "x",
        (a, h) => ({ x: h(6), out: a(6), rows: 1, cols: 6, xOffset: 0, xRowStride: 0, outOffset: 0, outRowStride: 0 }),
      ],
    ] as [OpName, string, Rule["args"]][]
  ).map(
    ([op, arg, args]): Rule => ({
      op,
      rule: `f16 ${arg}`,
      message: new RegExp(`${arg} is an f16 buffer; only the weights of conv2d and linear may be f16`),
      args,
    }),
  ),
];

const contractBackends: Backend[] = [
  { name: "reference", make: async () => new ReferenceKernels(), eps: 0 },
  ...backends.filter((b) => !b.tags && !b.name.includes("unshared")),
];
for (const be of contractBackends) {
  describe.skipIf(be.skip !== undefined)(`the contract on ${be.name}`, () => {
    let k: Kernels;
    beforeAll(async () => {
      k = await be.make();
    });
    afterAll(() => k?.dispose());

    it("every op's validate() rule throws AutoencoderKLError naming the backend, the op and the rule", () => {
      for (const r of rules) {
        const bufs: DeviceBuffer[] = [];
        const alloc: Alloc = (n) => {
          const b = k.alloc(n);
          bufs.push(b);
          return b;
        };
        const half: Alloc = (n) => {
          const b = k.allocHalf(n);
          bufs.push(b);
          return b;
        };
        const args = r.args(alloc, half);
        let thrown: unknown;
        try {
          (k[r.op] as (a: unknown) => unknown).call(k, args);
        } catch (e) {
          thrown = e;
        }
        expect(thrown, `${r.op}: ${r.rule}`).toBeInstanceOf(AutoencoderKLError);
        expect((thrown as Error).message, `${r.op}: ${r.rule}`).toMatch(r.message);
        expect((thrown as Error).message, `${r.op}: ${r.rule}`).toContain(`${k.name}: ${r.op}`);
        for (const b of bufs) k.free(b);
      }
    });

    it("ops reject buffers from another backend", () => {
      if (k.name === "reference") return; // every reference buffer is a plain array: nothing foreign to tell apart
      const own = k.alloc(4),
        foreign = ref.alloc(4);
      expect(() => k.add({ a: own, b: foreign, out: own, length: 4 })).toThrow(/not allocated by this backend/);
      k.free(own);
    });
  });
}
