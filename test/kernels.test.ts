// Every wasm kernel against the reference kernels (float64 accumulation) on random shapes, odd sizes
// included, for the plain SIMD build, the relaxed-SIMD build and the threaded backend.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoencoderKLError } from "../src/errors.js";
import { ACTIVATIONS, type Activation, type DeviceBuffer, type Kernels } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { createWasmBackend, type WasmKernels } from "../src/backends/wasm/index.js";
import { FreeListAllocator } from "../src/backends/wasm/allocator.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";

// Node 20 compiles relaxed SIMD only behind a V8 flag: switched on for this file's process (tests only).
const relaxed = enableRelaxedSimd();
const relaxedOk = relaxed.ok;
if (!relaxedOk) console.warn(`kernels.test: skipping the relaxed-SIMD build: ${relaxed.reason}`);

// ---- helpers ------------------------------------------------------------------------------------------

/** Deterministic uniform [lo, hi) values (xorshift32). */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    data: (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * next()),
  };
}

const ref = new ReferenceKernels();

/** Runs `op` on both backends with the same host inputs; returns [wasm output, reference output]. */
async function both(
  k: Kernels,
  inputs: Record<string, Float32Array | null>,
  outLength: number,
  op: (kk: Kernels, b: Record<string, DeviceBuffer | null>, out: DeviceBuffer) => unknown,
  outInit?: Float32Array,
): Promise<[Float32Array, Float32Array]> {
  const results: Float32Array[] = [];
  for (const kk of [k, ref]) {
    const b: Record<string, DeviceBuffer | null> = {};
    for (const [name, data] of Object.entries(inputs)) {
      if (data === null) {
        b[name] = null;
        continue;
      }
      b[name] = kk.alloc(data.length);
      kk.write(b[name]!, data);
    }
    const out = kk.alloc(outLength);
    if (outInit) kk.write(out, outInit);
    await op(kk, b, out);
    results.push(await kk.read(out));
    for (const v of Object.values(b)) if (v) kk.free(v);
    kk.free(out);
  }
  return [results[0], results[1]];
}

/** max |a - b| ≤ tol · max(1, max |b|), with the worst element in the message. */
function expectClose(a: Float32Array, b: Float32Array, tol: number, what = ""): void {
  expect(a.length).toBe(b.length);
  let scale = 1;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  if (!(worst <= tol * scale)) {
    throw new Error(`${what}: max diff ${worst} at ${at} (wasm ${a[at]}, ref ${b[at]}) > ${tol} x ${scale}`);
  }
}

/** Element-wise |a - b| ≤ rel·|b| + abs. */
function expectRelClose(a: Float32Array, b: Float32Array, rel: number, abs: number, what = ""): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= rel * Math.abs(b[i]) + abs)) {
      throw new Error(`${what}: element ${i}: wasm ${a[i]} vs ref ${b[i]} (diff ${d}, rel ${d / Math.abs(b[i])})`);
    }
  }
}

interface ConvCase {
  batch: number; C: number; H: number; W: number; O: number; KH: number; KW: number; stride: number;
  pad: [top: number, bottom: number, left: number, right: number];
}

function convOut(c: ConvCase): [number, number] {
  return [
    Math.floor((c.H + c.pad[0] + c.pad[1] - c.KH) / c.stride) + 1,
    Math.floor((c.W + c.pad[2] + c.pad[3] - c.KW) / c.stride) + 1,
  ];
}

async function checkConv(k: Kernels, c: ConvCase, seed: number, opts: { bias?: boolean; residual?: boolean } = {}) {
  const r = rng(seed);
  const [OH, OW] = convOut(c);
  const outN = c.batch * c.O * OH * OW;
  const inputs = {
    x: r.data(c.batch * c.C * c.H * c.W),
    w: r.data(c.O * c.C * c.KH * c.KW, -0.5, 0.5),
    bias: opts.bias === false ? null : r.data(c.O),
    res: opts.residual ? r.data(outN) : null,
  };
  const [a, b] = await both(k, inputs, outN, (kk, buf, out) =>
    kk.conv2d({
      x: buf.x!, weight: buf.w!, bias: buf.bias, residual: buf.res, out,
      batch: c.batch, inChannels: c.C, inHeight: c.H, inWidth: c.W, outChannels: c.O, kernelH: c.KH, kernelW: c.KW,
      stride: c.stride, padTop: c.pad[0], padBottom: c.pad[1], padLeft: c.pad[2], padRight: c.pad[3],
      outHeight: OH, outWidth: OW,
    }),
  );
  expectClose(a, b, 2e-6 * Math.sqrt(c.C * c.KH * c.KW), `conv2d ${JSON.stringify(c)}`);
}

// ---- the suite, once per build ------------------------------------------------------------------------

type MakeOptions = Parameters<typeof createWasmBackend>[0];
const builds: Array<{ name: string; make: (o?: MakeOptions) => Promise<WasmKernels>; skip: boolean }> = [
  { name: "simd", make: (o) => createWasmBackend({ relaxed: false, ...o }), skip: false },
  { name: "relaxed-simd", make: (o) => createWasmBackend({ relaxed: true, ...o }), skip: !relaxedOk },
  {
    name: "simd, 2 threads",
    make: (o) => createWasmBackend({ relaxed: false, threads: 2, parallelThresholdNs: 0, ...o }),
    skip: false,
  },
  // the module's memory import patched to unshared (what runs where SharedArrayBuffer is unavailable)
  { name: "simd, unshared memory", make: (o) => createWasmBackend({ relaxed: false, sharedMemory: false, ...o }), skip: false },
];

for (const build of builds) {
  describe.skipIf(build.skip)(`wasm kernels (${build.name})`, () => {
    let k: WasmKernels;
    beforeAll(async () => {
      k = await build.make();
    });
    afterAll(() => k?.dispose());

    it("reports its instruction set and threads", () => {
      expect(k.name).toBe("wasm");
      expect(k.memory.buffer instanceof SharedArrayBuffer).toBe(!build.name.includes("unshared"));
      expect(k.description).toContain(build.name.startsWith("relaxed") ? "relaxed-simd" : "(simd");
      expect(k.description).toMatch(build.name.includes("2 threads") ? /2 threads/ : /1 thread\b/);
    });

    it("conv2d: 3x3 stride 1 pad 1 (resnet / mid-block convs), odd sizes and channels", async () => {
      const cases: ConvCase[] = [
        { batch: 1, C: 3, H: 15, W: 23, O: 8, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        { batch: 2, C: 13, H: 7, W: 5, O: 6, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        { batch: 1, C: 8, H: 30, W: 46, O: 3, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        { batch: 1, C: 4, H: 16, W: 16, O: 17, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        { batch: 1, C: 5, H: 1, W: 1, O: 5, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        { batch: 1, C: 32, H: 9, W: 64, O: 12, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
      ];
      for (const [i, c] of cases.entries()) await checkConv(k, c, 100 + i);
    });

    // measured: F(2x2, 3x3) errors are no larger than the direct sum's, so the same tolerance applies
    it("conv2d: Winograd F(2x2, 3x3) path (every 3x3 stride-1 pad-1 conv sent through it)", async () => {
      const wk = await build.make({ winogradMinChannels: 1 });
      try {
        const cases: ConvCase[] = [
          { batch: 1, C: 5, H: 15, W: 23, O: 7, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          { batch: 1, C: 3, H: 1, W: 1, O: 2, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          { batch: 2, C: 6, H: 2, W: 3, O: 13, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          { batch: 1, C: 17, H: 8, W: 8, O: 6, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          { batch: 2, C: 9, H: 11, W: 40, O: 11, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          // wide rows with many channels: a tile row is split into several work units
          { batch: 1, C: 131, H: 5, W: 211, O: 10, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
          { batch: 1, C: 1, H: 4, W: 17, O: 1, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] },
        ];
        for (const [i, c] of cases.entries()) {
          await checkConv(wk, c, 150 + i, { residual: i % 2 === 0, bias: i !== 3 });
        }
      } finally {
        wk.dispose();
      }
    });

    it("conv2d: 3x3 stride 2 with Downsample2D's (0, 1, 0, 1) padding", async () => {
      const cases: ConvCase[] = [
        { batch: 1, C: 8, H: 16, W: 16, O: 8, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] },
        { batch: 2, C: 5, H: 15, W: 23, O: 7, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] },
        { batch: 1, C: 3, H: 30, W: 46, O: 9, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] },
      ];
      for (const [i, c] of cases.entries()) await checkConv(k, c, 200 + i);
    });

    it("conv2d: 1x1 (shortcuts, quant convs) and without bias", async () => {
      const cases: ConvCase[] = [
        { batch: 1, C: 5, H: 15, W: 23, O: 7, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] },
        { batch: 2, C: 8, H: 3, W: 3, O: 8, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] },
        { batch: 1, C: 16, H: 4, W: 4, O: 32, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] },
      ];
      for (const [i, c] of cases.entries()) await checkConv(k, c, 300 + i);
      await checkConv(k, cases[0], 310, { bias: false });
      await checkConv(k, { batch: 1, C: 4, H: 9, W: 11, O: 6, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, 311, { bias: false });
    });

    it("conv2d: general kernel sizes, strides and asymmetric padding", async () => {
      const cases: ConvCase[] = [
        { batch: 1, C: 3, H: 11, W: 13, O: 5, KH: 2, KW: 5, stride: 3, pad: [1, 0, 2, 1] },
        { batch: 2, C: 4, H: 9, W: 10, O: 6, KH: 5, KW: 3, stride: 1, pad: [2, 2, 0, 3] },
        { batch: 1, C: 6, H: 8, W: 8, O: 4, KH: 1, KW: 1, stride: 2, pad: [0, 0, 0, 0] },
        { batch: 1, C: 2, H: 7, W: 9, O: 3, KH: 1, KW: 1, stride: 1, pad: [1, 0, 0, 1] },
        { batch: 1, C: 3, H: 12, W: 12, O: 5, KH: 4, KW: 4, stride: 4, pad: [0, 0, 0, 0] },
        { batch: 1, C: 4, H: 10, W: 14, O: 4, KH: 3, KW: 3, stride: 3, pad: [2, 1, 1, 2] },
      ];
      for (const [i, c] of cases.entries()) await checkConv(k, c, 400 + i);
    });

    it("conv2d: fused residual add", async () => {
      await checkConv(k, { batch: 1, C: 6, H: 15, W: 23, O: 6, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, 500, { residual: true });
      await checkConv(k, { batch: 2, C: 7, H: 5, W: 9, O: 5, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] }, 501, { residual: true });
      await checkConv(k, { batch: 1, C: 3, H: 8, W: 8, O: 4, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] }, 502, { residual: true, bias: false });
    });

    it("conv2d: many input channels (the reduction is split into cached chunks), with residual", async () => {
      await checkConv(k, { batch: 1, C: 300, H: 5, W: 64, O: 8, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, 520, { residual: true });
      await checkConv(k, { batch: 2, C: 280, H: 6, W: 70, O: 7, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] }, 521, { residual: true });
      await checkConv(k, { batch: 1, C: 600, H: 9, W: 17, O: 9, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] }, 522, { residual: true });
    });

    it("conv2d: random shapes", async () => {
      const r = rng(77);
      for (let t = 0; t < 12; t++) {
        const KH = r.int(1, 4), KW = r.int(1, 4), stride = r.int(1, 3);
        const H = r.int(KH, 20), W = r.int(KW, 27);
        const c: ConvCase = {
          batch: r.int(1, 2), C: r.int(1, 9), H, W, O: r.int(1, 11), KH, KW, stride,
          pad: [r.int(0, 2), r.int(0, 2), r.int(0, 2), r.int(0, 2)],
        };
        await checkConv(k, c, 600 + t, { residual: t % 3 === 0, bias: t % 4 !== 1 });
      }
    });

    it("groupNorm with every fused activation, odd spatial sizes", async () => {
      const r = rng(7);
      for (const act of ACTIVATIONS) {
        for (const [batch, channels, spatial, groups] of [[1, 12, 345, 4], [2, 8, 7, 8], [1, 6, 30 * 46, 3], [1, 32, 1, 32]]) {
          const n = batch * channels * spatial;
          const [a, b] = await both(
            k,
            { x: r.data(n, -3, 5), g: r.data(channels, 0.5, 1.5), b: r.data(channels, -0.5, 0.5) },
            n,
            (kk, buf, out) =>
              kk.groupNorm({ x: buf.x!, gamma: buf.g!, beta: buf.b!, out, batch, channels, spatial, groups, eps: 1e-6, activation: act }),
          );
          expectClose(a, b, 2e-6, `groupNorm ${act} ${[batch, channels, spatial, groups]}`);
        }
      }
    });

    it("groupNorm in place, and a large group with a large mean (statistics accuracy)", async () => {
      const r = rng(8);
      const [batch, channels, spatial, groups] = [1, 8, 128 * 128, 2];
      const n = batch * channels * spatial;
      const x = r.data(n, 99, 101); // mean 100, std ~0.58: an f32 running sum would lose digits
      const g = r.data(channels, 0.5, 1.5), be = r.data(channels, -0.5, 0.5);
      const [a, b] = await both(k, { g, b: be }, n, (kk, buf, out) =>
        kk.groupNorm({ x: out, gamma: buf.g!, beta: buf.b!, out, batch, channels, spatial, groups, eps: 1e-6, activation: "silu" }),
        x,
      );
      expectClose(a, b, 2e-5, "groupNorm in place, mean 100");
    });

    it("channelAffine with every activation, in place", async () => {
      const r = rng(9);
      for (const act of ACTIVATIONS) {
        const [batch, channels, spatial] = [2, 5, 23];
        const n = batch * channels * spatial;
        const [a, b] = await both(k, { s: r.data(batch * channels), t: r.data(batch * channels) }, n, (kk, buf, out) =>
          kk.channelAffine({ x: out, scale: buf.s!, shift: buf.t!, out, batch, channels, spatial, activation: act }),
          r.data(n, -4, 4),
        );
        expectRelClose(a, b, 2e-6, 1e-6, `channelAffine ${act}`);
      }
    });

    it("activation: every function matches the reference to ~1e-6 relative, in place too", async () => {
      // a dense sweep plus the special points: 0, ±20 (Mish's softplus threshold), far tails
      const sweep = Array.from({ length: 2001 }, (_, i) => -25 + i * 0.025);
      const special = [0, -0, 20, -20, 19.999, 20.001, 1e-8, -1e-8, 88, -88, 100, -100, 1e4, -1e4, 3.4e38, -3.4e38];
      const x = Float32Array.from([...sweep, ...special]);
      for (const act of ACTIVATIONS) {
        const [a, b] = await both(k, { x }, x.length, (kk, buf, out) => kk.activation({ x: buf.x!, out, length: x.length, activation: act }));
        // the reference forms GELU as 1 + erf (f64), which resolves only ~1e-16 absolute in the far tail
        expectRelClose(a, b, 1e-6, act === "gelu" ? 1e-15 : 1e-30, `activation ${act}`);
        const [c] = await both(k, {}, x.length, (kk, _b, out) => kk.activation({ x: out, out, length: x.length, activation: act }), x);
        expect(c).toEqual(a);
      }
    });

    it("activation and add on short and odd lengths", async () => {
      const r = rng(10);
      for (const length of [1, 2, 3, 4, 5, 7, 15, 16, 17, 33, 1001]) {
        const [a, b] = await both(k, { a: r.data(length), b: r.data(length) }, length, (kk, buf, out) => kk.add({ a: buf.a!, b: buf.b!, out, length }));
        expect(a).toEqual(b);
        for (const act of ["silu", "gelu"] as Activation[]) {
          const [c, d] = await both(k, { x: r.data(length, -6, 6) }, length, (kk, buf, out) => kk.activation({ x: buf.x!, out, length, activation: act }));
          expectRelClose(c, d, 1e-6, 1e-15, `${act} length ${length}`);
        }
      }
    });

    it("add: out may alias a or b", async () => {
      const r = rng(11);
      const length = 37;
      const a = r.data(length), b = r.data(length);
      const want = a.map((v, i) => Math.fround(v + b[i]));
      const ba = k.alloc(length), bb = k.alloc(length);
      k.write(ba, a);
      k.write(bb, b);
      await k.add({ a: ba, b: bb, out: ba, length });
      expect(await k.read(ba)).toEqual(want);
      k.write(ba, a);
      await k.add({ a: ba, b: bb, out: bb, length });
      expect(await k.read(bb)).toEqual(want);
      k.free(ba);
      k.free(bb);
    });

    it("linear: random shapes, with and without bias", async () => {
      const r = rng(12);
      for (let t = 0; t < 10; t++) {
        const rows = r.int(1, 37), inF = r.int(1, 70), outF = r.int(1, 33);
        const [a, b] = await both(
          k,
          { x: r.data(rows * inF), w: r.data(outF * inF), bias: t % 2 ? r.data(outF) : null },
          rows * outF,
          (kk, buf, out) => kk.linear({ x: buf.x!, weight: buf.w!, bias: buf.bias, out, rows, inFeatures: inF, outFeatures: outF }),
        );
        expectClose(a, b, 2e-6 * Math.sqrt(inF), `linear ${[rows, inF, outF]}`);
      }
    });

    it("matmul: batched, transposeB both ways, alpha", async () => {
      const r = rng(13);
      for (let t = 0; t < 12; t++) {
        const batch = r.int(1, 3), m = r.int(1, 29), n = r.int(1, 31), kk0 = r.int(1, 45);
        const transposeB = t % 2 === 1, alpha = t % 3 === 0 ? 1 : 0.125 + r.next();
        const [a, b] = await both(k, { a: r.data(batch * m * kk0), b: r.data(batch * kk0 * n) }, batch * m * n, (kk, buf, out) =>
          kk.matmul({ a: buf.a!, b: buf.b!, out, batch, m, n, k: kk0, transposeB, alpha }),
        );
        expectClose(a, b, 2e-6 * Math.sqrt(kk0), `matmul ${[batch, m, n, kk0, transposeB, alpha]}`);
      }
    });

    it("softmax: -inf logits (masks) give exactly 0", async () => {
      const x = Float32Array.from([1, -Infinity, 2, -Infinity, 0.5, -Infinity, -Infinity, 3, 1, -Infinity]);
      const [a, b] = await both(k, { x }, x.length, (kk, buf, out) => kk.softmax({ x: buf.x!, out, rows: 1, cols: x.length }));
      for (let i = 0; i < x.length; i++) if (x[i] === -Infinity) expect(a[i]).toBe(0);
      expectRelClose(a, b, 2e-6, 0, "softmax with -inf");
    });

    it("softmax: odd sizes, large logits, in place", async () => {
      const r = rng(14);
      for (const [rows, cols] of [[1, 1], [3, 5], [7, 300], [2, 4096], [5, 17]]) {
        const x = r.data(rows * cols, -30, 30);
        const [a, b] = await both(k, { x }, rows * cols, (kk, buf, out) => kk.softmax({ x: buf.x!, out, rows, cols }));
        expectRelClose(a, b, 2e-6, 1e-12, `softmax ${rows}x${cols}`);
        const [c] = await both(k, {}, rows * cols, (kk, _b, out) => kk.softmax({ x: out, out, rows, cols }), x);
        expect(c).toEqual(a);
      }
    });

    it("attention: blocked online softmax across key blocks, odd sizes", async () => {
      const r = rng(15);
      const cases = [[1, 1, 1, 1], [1, 7, 5, 3], [2, 30, 130, 9], [1, 50, 300, 17], [1, 25, 257, 64], [2, 3, 129, 5]];
      for (const [batch, queries, keys, dim] of cases) {
        const scale = 1 / Math.sqrt(dim);
        const [a, b] = await both(
          k,
          { q: r.data(batch * queries * dim, -2, 2), k: r.data(batch * keys * dim, -2, 2), v: r.data(batch * keys * dim) },
          batch * queries * dim,
          (kk, buf, out) => kk.attention({ q: buf.q!, k: buf.k!, v: buf.v!, out, batch, queries, keys, dim, scale }),
        );
        expectClose(a, b, 3e-6, `attention ${[batch, queries, keys, dim]}`);
      }
    });

    it("upsampleNearest2x and transpose on odd sizes", async () => {
      const r = rng(16);
      for (const [planes, height, width] of [[1, 1, 1], [3, 5, 7], [2, 15, 23], [1, 4, 8]]) {
        const n = planes * height * width;
        const [a, b] = await both(k, { x: r.data(n) }, 4 * n, (kk, buf, out) => kk.upsampleNearest2x({ x: buf.x!, out, planes, height, width }));
        expect(a).toEqual(b);
      }
      for (const [batch, rows, cols] of [[1, 1, 1], [2, 5, 7], [1, 4, 4], [3, 9, 13], [1, 64, 3], [1, 3, 64]]) {
        const n = batch * rows * cols;
        const [a, b] = await both(k, { x: r.data(n) }, n, (kk, buf, out) => kk.transpose({ x: buf.x!, out, batch, rows, cols }));
        expect(a).toEqual(b);
      }
    });

    it("copy: strided rows with offsets", async () => {
      const r = rng(17);
      const x = r.data(200);
      const outInit = r.data(300);
      const [a, b] = await both(k, { x }, 300, (kk, buf, out) =>
        kk.copy({ x: buf.x!, out, rows: 7, cols: 9, xOffset: 3, xRowStride: 25, outOffset: 11, outRowStride: 31 }),
        outInit,
      );
      expect(a).toEqual(b);
    });

    it("rejects foreign, freed and too-small buffers with AutoencoderKLError", async () => {
      const b = k.alloc(10);
      const other = ref.alloc(10);
      expect(() => k.add({ a: b, b: other, out: b, length: 10 })).toThrow(AutoencoderKLError);
      expect(() => k.add({ a: b, b, out: b, length: 11 })).toThrow(/a holds 10 elements, needs 11/);
      expect(() => k.write(b, new Float32Array(11))).toThrow(AutoencoderKLError);
      k.free(b);
      expect(() => k.free(b)).toThrow(/already freed/);
      await expect(async () => k.read(b)).rejects.toThrow(AutoencoderKLError);
    });
  });
}

describe("wasm backend memory", () => {
  it("allocator: first fit, 16-byte alignment, coalescing", () => {
    const a = new FreeListAllocator(1000, 1000 + 4096);
    const p1 = a.alloc(10), p2 = a.alloc(100), p3 = a.alloc(16);
    expect([p1 % 16, p2 % 16, p3 % 16]).toEqual([0, 0, 0]);
    expect(p2).toBe(p1 + 16);
    expect(p3).toBe(p2 + 112);
    a.free(p2, 100);
    expect(a.alloc(64)).toBe(p2); // first fit reuses the hole
    a.free(p1, 10);
    a.free(p3, 16);
    a.free(p2, 64);
    expect(a.stats().blocks).toBe(1); // everything merged back
    expect(a.stats().largest).toBe(a.stats().end - 1008);
    expect(a.alloc(1 << 20)).toBe(-1);
    const p4 = a.alloc(32);
    a.free(p4, 32);
    expect(() => a.free(p4, 32)).toThrow(/double free/);
  });

  it("grows the memory on demand and reuses freed blocks", async () => {
    const k = await createWasmBackend({ relaxed: false, initialMemoryMiB: 1 });
    try {
      const before = k.memoryStats().bytes;
      const big = k.alloc(3 << 20); // 12 MiB
      expect(k.memoryStats().bytes).toBeGreaterThan(before);
      const data = new Float32Array(3 << 20).fill(1.5);
      k.write(big, data, 0);
      const back = await k.read(big, 5);
      expect(Array.from(back)).toEqual([1.5, 1.5, 1.5, 1.5, 1.5]);
      k.free(big);
      const grown = k.memoryStats().bytes;
      const again = k.alloc(3 << 20);
      expect(k.memoryStats().bytes).toBe(grown);
      k.free(again);
      expect(k.memoryStats().buffers).toBe(0);
    } finally {
      k.dispose();
    }
  });

  it("fails with AutoencoderKLError naming the size when memory cannot grow", async () => {
    const k = await createWasmBackend({ relaxed: false, initialMemoryMiB: 1 });
    try {
      expect(() => k.alloc(1.2e9)).toThrow(AutoencoderKLError); // 4.8 GB > wasm32's 4 GiB
      expect(() => k.alloc(1.2e9)).toThrow(/4800000000 bytes/);
      expect(() => k.alloc(-1)).toThrow(AutoencoderKLError);
      expect(k.memoryStats().buffers).toBe(0);
    } finally {
      k.dispose();
    }
  });

  it("is unusable after dispose", async () => {
    const k = await createWasmBackend({ relaxed: false });
    const b = k.alloc(4);
    k.dispose();
    expect(() => k.alloc(4)).toThrow(/after dispose/);
    expect(() => k.write(b, new Float32Array(4))).toThrow(AutoencoderKLError);
  });

  it("relaxed: true fails clearly where the engine lacks relaxed SIMD; wasmBytes overrides loading", async () => {
    if (!relaxedOk) {
      await expect(createWasmBackend({ relaxed: true })).rejects.toThrow(/relaxed SIMD is not supported/);
    }
    const { readFile } = await import("node:fs/promises");
    const bytes = await readFile(new URL("../build/kernels-simd.wasm", import.meta.url));
    const k = await createWasmBackend({ wasmBytes: bytes });
    expect(k.description).toContain("(simd");
    k.dispose();
    await expect(createWasmBackend({ wasmUrl: new URL("../build/missing.wasm", import.meta.url) })).rejects.toThrow(AutoencoderKLError);
  });
});

describe("wasm backend threads", () => {
  // parallelThresholdNs: 0, so every op really is split across the workers; each output element is
  // computed by the same code whichever thread owns it, so results match bit for bit.
  let one: WasmKernels, two: WasmKernels;
  beforeAll(async () => {
    one = await createWasmBackend({ relaxed: false, threads: 1 });
    two = await createWasmBackend({ relaxed: false, threads: 2, parallelThresholdNs: 0 });
  });
  afterAll(() => {
    one?.dispose();
    two?.dispose();
  });

  async function same(
    inputs: Record<string, Float32Array>,
    outLength: number,
    op: (kk: Kernels, b: Record<string, DeviceBuffer>, out: DeviceBuffer) => unknown,
  ): Promise<void> {
    const results: Float32Array[] = [];
    for (const kk of [one, two]) {
      const b: Record<string, DeviceBuffer> = {};
      for (const [name, data] of Object.entries(inputs)) {
        b[name] = kk.alloc(data.length);
        kk.write(b[name], data);
      }
      const out = kk.alloc(outLength);
      const before = two.parallelOps;
      await op(kk, b, out);
      if (kk === two) expect(two.parallelOps, "op was not split across the threads").toBe(before + 1);
      results.push(await kk.read(out));
      for (const v of Object.values(b)) kk.free(v);
      kk.free(out);
    }
    // bit-for-bit, compared as bytes (toEqual on large typed arrays takes seconds)
    const [x, y] = results.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));
    expect(x.length).toBe(y.length);
    expect(Buffer.compare(x, y), "2-thread result differs from 1-thread result").toBe(0);
  }

  it("starts workers and says so", () => {
    expect(two.threadFallback).toBeNull();
    expect(two.threads).toBe(2);
    expect(two.description).toBe("wasm (simd, 2 threads)");
  });

  it("conv2d: split by output channels, by rows (few channels), and the 1x1 pixel split", async () => {
    const r = rng(900);
    const cases: ConvCase[] = [
      { batch: 1, C: 16, H: 31, W: 29, O: 40, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, // channels
      { batch: 2, C: 32, H: 30, W: 30, O: 3, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, // rows
      { batch: 1, C: 24, H: 33, W: 35, O: 13, KH: 3, KW: 3, stride: 2, pad: [0, 1, 0, 1] },
      { batch: 1, C: 64, H: 45, W: 45, O: 8, KH: 1, KW: 1, stride: 1, pad: [0, 0, 0, 0] }, // pixels
      { batch: 1, C: 300, H: 9, W: 64, O: 14, KH: 3, KW: 3, stride: 1, pad: [1, 1, 1, 1] }, // channel chunks
    ];
    for (const c of cases) {
      const [OH, OW] = convOut(c);
      const outN = c.batch * c.O * OH * OW;
      await same({ x: r.data(c.batch * c.C * c.H * c.W), w: r.data(c.O * c.C * c.KH * c.KW), b: r.data(c.O), res: r.data(outN) }, outN, (kk, b, out) =>
        kk.conv2d({
          x: b.x, weight: b.w, bias: b.b, residual: b.res, out, batch: c.batch, inChannels: c.C, inHeight: c.H, inWidth: c.W,
          outChannels: c.O, kernelH: c.KH, kernelW: c.KW, stride: c.stride, padTop: c.pad[0], padBottom: c.pad[1],
          padLeft: c.pad[2], padRight: c.pad[3], outHeight: OH, outWidth: OW,
        }),
      );
    }
  });

  it("linear, matmul, attention, softmax", async () => {
    const r = rng(901);
    await same({ x: r.data(301 * 96), w: r.data(70 * 96), b: r.data(70) }, 301 * 70, (kk, b, out) =>
      kk.linear({ x: b.x, weight: b.w, bias: b.b, out, rows: 301, inFeatures: 96, outFeatures: 70 }));
    for (const transposeB of [false, true]) {
      await same({ a: r.data(3 * 77 * 65), b: r.data(3 * 65 * 59) }, 3 * 77 * 59, (kk, b, out) =>
        kk.matmul({ a: b.a, b: b.b, out, batch: 3, m: 77, n: 59, k: 65, transposeB, alpha: 0.5 }));
    }
    await same({ q: r.data(2 * 130 * 40), k: r.data(2 * 150 * 40), v: r.data(2 * 150 * 40) }, 2 * 130 * 40, (kk, b, out) =>
      kk.attention({ q: b.q, k: b.k, v: b.v, out, batch: 2, queries: 130, keys: 150, dim: 40, scale: 0.3 }));
    await same({ x: r.data(333 * 257, -5, 5) }, 333 * 257, (kk, b, out) => kk.softmax({ x: b.x, out, rows: 333, cols: 257 }));
  });

  it("groupNorm, channelAffine, activation, add, upsample, transpose, copy", async () => {
    const r = rng(902);
    const [C, S] = [64, 67 * 71];
    await same({ x: r.data(2 * C * S, -2, 3), g: r.data(C), b: r.data(C) }, 2 * C * S, (kk, b, out) =>
      kk.groupNorm({ x: b.x, gamma: b.g, beta: b.b, out, batch: 2, channels: C, spatial: S, groups: 16, eps: 1e-6, activation: "silu" }));
    await same({ x: r.data(2 * C * S), s: r.data(2 * C), t: r.data(2 * C) }, 2 * C * S, (kk, b, out) =>
      kk.channelAffine({ x: b.x, scale: b.s, shift: b.t, out, batch: 2, channels: C, spatial: S, activation: "gelu" }));
    const n = 300_001;
    await same({ x: r.data(n, -9, 9) }, n, (kk, b, out) => kk.activation({ x: b.x, out, length: n, activation: "mish" }));
    await same({ a: r.data(n), b: r.data(n) }, n, (kk, b, out) => kk.add({ a: b.a, b: b.b, out, length: n }));
    await same({ x: r.data(70 * 41 * 43) }, 4 * 70 * 41 * 43, (kk, b, out) => kk.upsampleNearest2x({ x: b.x, out, planes: 70, height: 41, width: 43 }));
    await same({ x: r.data(3 * 301 * 299) }, 3 * 301 * 299, (kk, b, out) => kk.transpose({ x: b.x, out, batch: 3, rows: 301, cols: 299 }));
    await same({ x: r.data(600 * 500) }, 700 * 520, (kk, b, out) =>
      kk.copy({ x: b.x, out, rows: 599, cols: 450, xOffset: 7, xRowStride: 500, outOffset: 3, outRowStride: 520 }));
  });

  it("ops called without awaiting still run in order", async () => {
    const n = 400_000;
    const a = two.alloc(n), b = two.alloc(n);
    two.write(a, new Float32Array(n).fill(1));
    two.write(b, new Float32Array(n).fill(2));
    const pending = [two.add({ a, b, out: a, length: n }), two.add({ a, b, out: a, length: n }), two.activation({ x: a, out: a, length: n, activation: "relu" })];
    const got = await two.read(a, 3); // read waits for everything queued before it
    expect(Array.from(got)).toEqual([5, 5, 5]);
    await Promise.all(pending);
    two.free(a);
    two.free(b);
  });
});
