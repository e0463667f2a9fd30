import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoencoderKLError } from "../src/errors.js";
import { ACTIVATIONS, type Activation, type DeviceBuffer, type Kernels, type MaybePromise } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { createWebGPUBackend, isSoftwareAdapter, type WebGPUKernels, type WebGPULimits } from "../src/backends/webgpu/index.js";
import { acquireTestGPU } from "./helpers/webgpu-env.js";

// Every WGSL kernel against the reference kernel, on small odd shapes (SwiftShader runs on the CPU), once
// with the device's limits and once with limits lowered so far that every op is split into many
// dispatches over sub-ranges of its buffers and folded grids.

const env = await acquireTestGPU();
if (env.reason) console.warn(`[webgpu-kernels] skipping the WebGPU kernel suite: ${env.reason}`);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(1234);
const randn = (n: number, scale = 1, shift = 0): Float32Array => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale + shift);

/** |got - want| <= atol + rtol * |want| everywhere; reports the worst element. */
function expectClose(got: Float32Array, want: Float32Array, atol = 1e-4, rtol = 1e-4, what = ""): void {
  expect(got.length).toBe(want.length);
  let worst = -1, ratio = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const r = d === 0 ? 0 : d / (atol + rtol * Math.abs(want[i]));
    if (!(r <= ratio)) {
      ratio = r;
      worst = i;
      if (Number.isNaN(r)) break;
    }
  }
  if (!(ratio <= 1)) expect.fail(`${what} element ${worst}: got ${got[worst]}, want ${want[worst]} (${want.length} elements)`);
}

type Op = (k: Kernels, b: Record<string, DeviceBuffer>) => MaybePromise;

/** Runs `op` on both backends with the same host inputs and compares the buffer named `result`. */
async function compare(gpu: Kernels, inputs: Record<string, Float32Array>, op: Op, result: string, atol = 1e-4, rtol = 1e-4): Promise<void> {
  const run = async (k: Kernels): Promise<Float32Array> => {
    const b: Record<string, DeviceBuffer> = {};
    for (const [name, data] of Object.entries(inputs)) {
      b[name] = k.alloc(data.length);
      k.write(b[name], data);
    }
    await op(k, b);
    const out = await k.read(b[result]);
    for (const buf of Object.values(b)) k.free(buf);
    return out;
  };
  const want = await run(new ReferenceKernels());
  const got = await run(gpu);
  expectClose(got, want, atol, rtol, result);
}

/** Random cases per config; raise WEBGPU_FUZZ for a longer shake-out. */
const FUZZ = Number(process.env.WEBGPU_FUZZ ?? 6);

const LOWERED: Partial<WebGPULimits> = { maxStorageBufferBindingSize: 2048, maxComputeWorkgroupsPerDimension: 2 };

describe.skipIf(!env.adapter)("webgpu kernels vs reference", () => {
  let base: WebGPUKernels;
  beforeAll(async () => {
    base = await createWebGPUBackend({ adapter: env.adapter });
  });
  afterAll(() => base?.dispose());

  for (const cfg of [{ name: "device limits", limits: undefined }, { name: "lowered limits (forced splitting)", limits: LOWERED }]) {
    describe(cfg.name, () => {
      let gpu: WebGPUKernels;
      beforeAll(async () => {
        gpu = cfg.limits ? await createWebGPUBackend({ device: base.device, limits: cfg.limits }) : base;
      });
      afterAll(() => {
        if (gpu !== base) gpu?.dispose();
      });

      const convCases = [
        { N: 2, C: 3, H: 7, W: 9, O: 5, KH: 3, KW: 3, S: 1, pad: [1, 1, 1, 1], bias: true, res: "none" },
        { N: 1, C: 6, H: 9, W: 8, O: 70, KH: 3, KW: 3, S: 2, pad: [0, 1, 0, 1], bias: true, res: "separate" },
        { N: 2, C: 5, H: 6, W: 5, O: 3, KH: 1, KW: 1, S: 1, pad: [0, 0, 0, 0], bias: false, res: "separate" },
        { N: 1, C: 37, H: 5, W: 6, O: 4, KH: 3, KW: 3, S: 1, pad: [1, 1, 1, 1], bias: true, res: "separate" },
        { N: 1, C: 2, H: 23, W: 23, O: 3, KH: 3, KW: 3, S: 1, pad: [1, 1, 1, 1], bias: true, res: "separate" },
        { N: 1, C: 3, H: 8, W: 11, O: 2, KH: 2, KW: 3, S: 2, pad: [1, 2, 0, 1], bias: false, res: "none" },
      ] as const;
      for (const c of convCases) {
        it(`conv2d N${c.N} C${c.C} ${c.H}x${c.W} -> O${c.O} k${c.KH}x${c.KW} s${c.S} pad[${c.pad}] bias=${c.bias} residual=${c.res}`, async () => {
          const [pt, pb, pl, pr] = c.pad;
          const OH = Math.floor((c.H + pt + pb - c.KH) / c.S) + 1, OW = Math.floor((c.W + pl + pr - c.KW) / c.S) + 1;
          const outLen = c.N * c.O * OH * OW;
          const inputs: Record<string, Float32Array> = {
            x: randn(c.N * c.C * c.H * c.W), w: randn(c.O * c.C * c.KH * c.KW, 0.3), b: randn(c.O), r: randn(outLen),
            out: c.res === "out" ? randn(outLen) : new Float32Array(outLen),
          };
          await compare(gpu, inputs, (k, b) => k.conv2d({
            x: b.x, weight: b.w, bias: c.bias ? b.b : null, residual: c.res === "separate" ? b.r : c.res === "out" ? b.out : null, out: b.out,
            batch: c.N, inChannels: c.C, inHeight: c.H, inWidth: c.W, outChannels: c.O, kernelH: c.KH, kernelW: c.KW, stride: c.S,
            padTop: pt, padBottom: pb, padLeft: pl, padRight: pr, outHeight: OH, outWidth: OW,
          }), "out");
        });
      }

      for (const act of ACTIVATIONS) {
        it(`groupNorm + ${act} (N2 C6 S35 G3, offset data)`, async () => {
          const N = 2, C = 6, S = 35, G = 3;
          await compare(gpu, { x: randn(N * C * S, 2, 3), g: randn(C, 1, 1), b: randn(C), out: new Float32Array(N * C * S) }, (k, b) =>
            k.groupNorm({ x: b.x, gamma: b.g, beta: b.b, out: b.out, batch: N, channels: C, spatial: S, groups: G, eps: 1e-6, activation: act }), "out");
        });
      }
      it("groupNorm in place, groups spanning several reduction slices (C4 S1500 G2; C1 S5000 G1)", async () => {
        for (const [C, S, G] of [[4, 1500, 2], [1, 5000, 1]]) {
          await compare(gpu, { x: randn(C * S, 1, -0.5), g: randn(C), b: randn(C) }, (k, b) =>
            k.groupNorm({ x: b.x, gamma: b.g, beta: b.b, out: b.x, batch: 1, channels: C, spatial: S, groups: G, eps: 1e-6, activation: "silu" }), "x");
        }
      });

      for (const act of ACTIVATIONS) {
        it(`channelAffine + ${act} (separate and in place)`, async () => {
          const N = 2, C = 3, S = 37;
          await compare(gpu, { x: randn(N * C * S, 2), s: randn(N * C), t: randn(N * C), out: new Float32Array(N * C * S) }, (k, b) =>
            k.channelAffine({ x: b.x, scale: b.s, shift: b.t, out: b.out, batch: N, channels: C, spatial: S, activation: act }), "out", 1e-5, 1e-5);
          await compare(gpu, { x: randn(N * C * S, 2), s: randn(N * C), t: randn(N * C) }, (k, b) =>
            k.channelAffine({ x: b.x, scale: b.s, shift: b.t, out: b.x, batch: N, channels: C, spatial: S, activation: act }), "x", 1e-5, 1e-5);
        });
      }

      it("linear with and without bias (odd sizes)", async () => {
        for (const [rows, inF, outF, bias] of [[37, 19, 70, true], [5, 130, 3, false], [1, 1, 1, true]] as const) {
          await compare(gpu, { x: randn(rows * inF), w: randn(outF * inF), b: randn(outF), out: new Float32Array(rows * outF) }, (k, b) =>
            k.linear({ x: b.x, weight: b.w, bias: bias ? b.b : null, out: b.out, rows, inFeatures: inF, outFeatures: outF }), "out");
        }
      });

      for (const transposeB of [false, true]) {
        it(`matmul transposeB=${transposeB} (batched, odd sizes, alpha)`, async () => {
          for (const [batch, m, n, kk, alpha] of [[2, 33, 65, 17, 0.5], [3, 1, 1, 1, -2], [1, 70, 5, 140, 1]]) {
            await compare(gpu, { a: randn(batch * m * kk), b: randn(batch * kk * n), out: new Float32Array(batch * m * n) }, (k, b) =>
              k.matmul({ a: b.a, b: b.b, out: b.out, batch, m, n, k: kk, transposeB, alpha }), "out");
          }
        });
      }

      it("softmax, separate and in place, large logits", async () => {
        await compare(gpu, { x: randn(7 * 300, 30), out: new Float32Array(7 * 300) }, (k, b) => k.softmax({ x: b.x, out: b.out, rows: 7, cols: 300 }), "out", 1e-6, 1e-4);
        await compare(gpu, { x: randn(5 * 3) }, (k, b) => k.softmax({ x: b.x, out: b.x, rows: 5, cols: 3 }), "x", 1e-6, 1e-4);
        await compare(gpu, { x: randn(4) }, (k, b) => k.softmax({ x: b.x, out: b.x, rows: 4, cols: 1 }), "x", 1e-6, 1e-4);
      });

      it("attention (several query blocks and key tiles, head dims 20, 3 and 300)", async () => {
        for (const [B, NQ, NK, D] of [[2, 37, 70, 20], [1, 5, 130, 3], [1, 17, 17, 300]]) {
          await compare(gpu, { q: randn(B * NQ * D), k: randn(B * NK * D), v: randn(B * NK * D), out: new Float32Array(B * NQ * D) }, (k, b) =>
            k.attention({ q: b.q, k: b.k, v: b.v, out: b.out, batch: B, queries: NQ, keys: NK, dim: D, scale: 1 / Math.sqrt(D) }), "out");
        }
      });

      it("add: separate and every aliasing of out", async () => {
        const n = 1001;
        await compare(gpu, { a: randn(n), b: randn(n), out: new Float32Array(n) }, (k, b) => k.add({ a: b.a, b: b.b, out: b.out, length: n }), "out");
        await compare(gpu, { a: randn(n), b: randn(n) }, (k, b) => k.add({ a: b.a, b: b.b, out: b.a, length: n }), "a");
        await compare(gpu, { a: randn(n), b: randn(n) }, (k, b) => k.add({ a: b.a, b: b.b, out: b.b, length: n }), "b");
        await compare(gpu, { a: randn(n) }, (k, b) => k.add({ a: b.a, b: b.a, out: b.a, length: n }), "a");
      });

      const special = Float32Array.from([-100, -88.5, -30, -20.5, -15.5, -15, -1e-3, 0, 1e-3, 15, 20, 20.5, 30, 88.5, 100]);
      for (const act of ACTIVATIONS) {
        it(`activation ${act} (separate and in place, extreme inputs)`, async () => {
          const x = new Float32Array(777);
          x.set(randn(777, 8));
          x.set(special, 100);
          await compare(gpu, { x, out: new Float32Array(777) }, (k, b) => k.activation({ x: b.x, out: b.out, length: 777, activation: act as Activation }), "out", 1e-5, 1e-5);
          await compare(gpu, { x }, (k, b) => k.activation({ x: b.x, out: b.x, length: 777, activation: act as Activation }), "x", 1e-5, 1e-5);
        });
      }

      it("upsampleNearest2x", async () => {
        for (const [planes, h, w] of [[3, 5, 7], [2, 1, 100], [1, 31, 1]]) {
          await compare(gpu, { x: randn(planes * h * w), out: new Float32Array(planes * h * w * 4) }, (k, b) =>
            k.upsampleNearest2x({ x: b.x, out: b.out, planes, height: h, width: w }), "out", 0, 0);
        }
      });

      it("transpose", async () => {
        for (const [batch, rows, cols] of [[2, 19, 35], [1, 1, 400], [3, 40, 2]]) {
          await compare(gpu, { x: randn(batch * rows * cols), out: new Float32Array(batch * rows * cols) }, (k, b) =>
            k.transpose({ x: b.x, out: b.out, batch, rows, cols }), "out", 0, 0);
        }
      });

      it("copy (strided 2-D)", async () => {
        await compare(gpu, { x: randn(200), out: randn(150) }, (k, b) =>
          k.copy({ x: b.x, out: b.out, rows: 7, cols: 13, xOffset: 5, xRowStride: 20, outOffset: 3, outRowStride: 15 }), "out", 0, 0);
        await compare(gpu, { x: randn(3000), out: randn(3000) }, (k, b) =>
          k.copy({ x: b.x, out: b.out, rows: 2, cols: 1000, xOffset: 1000, xRowStride: 1000, outOffset: 1, outRowStride: 1500 }), "out", 0, 0);
      });

      it("random shapes: conv2d, matmul, attention, groupNorm, transpose, copy", async () => {
        const r = rng(cfg.limits ? 7 : 3);
        const ri = (lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
        for (let t = 0; t < FUZZ; t++) {
          const KH = ri(1, 3), KW = ri(1, 3), S = ri(1, 2), [pt, pb, pl, pr] = [ri(0, 2), ri(0, 2), ri(0, 2), ri(0, 2)];
          const N = ri(1, 2), C = ri(1, 9), O = ri(1, 9), H = ri(Math.max(1, KH - pt - pb), 13), W = ri(Math.max(1, KW - pl - pr), 13);
          const OH = Math.floor((H + pt + pb - KH) / S) + 1, OW = Math.floor((W + pl + pr - KW) / S) + 1;
          await compare(gpu, { x: randn(N * C * H * W), w: randn(O * C * KH * KW), b: randn(O), out: new Float32Array(N * O * OH * OW) }, (k, b) => k.conv2d({
            x: b.x, weight: b.w, bias: b.b, out: b.out, batch: N, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW,
            stride: S, padTop: pt, padBottom: pb, padLeft: pl, padRight: pr, outHeight: OH, outWidth: OW,
          }), "out");
          const [bt, m, n, kk] = [ri(1, 3), ri(1, 40), ri(1, 40), ri(1, 40)];
          const transposeB = r() < 0.5;
          await compare(gpu, { a: randn(bt * m * kk), b: randn(bt * kk * n), out: new Float32Array(bt * m * n) }, (k, b) =>
            k.matmul({ a: b.a, b: b.b, out: b.out, batch: bt, m, n, k: kk, transposeB, alpha: 0.7 }), "out");
          const [B, NQ, NK, D] = [ri(1, 2), ri(1, 40), ri(1, 90), ri(1, 24)];
          await compare(gpu, { q: randn(B * NQ * D), k: randn(B * NK * D), v: randn(B * NK * D), out: new Float32Array(B * NQ * D) }, (k, b) =>
            k.attention({ q: b.q, k: b.k, v: b.v, out: b.out, batch: B, queries: NQ, keys: NK, dim: D, scale: 1 / Math.sqrt(D) }), "out");
          const G = ri(1, 4), GC = G * ri(1, 3), SP = ri(1, 60);
          await compare(gpu, { x: randn(N * GC * SP, 1, 0.5), g: randn(GC), b: randn(GC), out: new Float32Array(N * GC * SP) }, (k, b) =>
            k.groupNorm({ x: b.x, gamma: b.g, beta: b.b, out: b.out, batch: N, channels: GC, spatial: SP, groups: G, eps: 1e-6, activation: ACTIVATIONS[t % 5] }), "out");
          const [tb, tr, tc] = [ri(1, 3), ri(1, 40), ri(1, 40)];
          await compare(gpu, { x: randn(tb * tr * tc), out: new Float32Array(tb * tr * tc) }, (k, b) =>
            k.transpose({ x: b.x, out: b.out, batch: tb, rows: tr, cols: tc }), "out", 0, 0);
          const [rows, cols] = [ri(1, 20), ri(1, 30)];
          const xs = cols + ri(0, 5), os = cols + ri(0, 5), xo = ri(0, 9), oo = ri(0, 9);
          await compare(gpu, { x: randn(xo + rows * xs), out: randn(oo + rows * os) }, (k, b) =>
            k.copy({ x: b.x, out: b.out, rows, cols, xOffset: xo, xRowStride: xs, outOffset: oo, outRowStride: os }), "out", 0, 0);
        }
      });

      it(cfg.limits ? "big ops are split into many dispatches" : "small ops take one dispatch each", async () => {
        const x = gpu.alloc(37 * 30), w = gpu.alloc(4 * 37 * 9), out = gpu.alloc(4 * 30);
        const q = gpu.alloc(70 * 20), o = gpu.alloc(70 * 20);
        const before = gpu.dispatchCount;
        gpu.conv2d({
          x, weight: w, bias: null, out, batch: 1, inChannels: 37, inHeight: 5, inWidth: 6, outChannels: 4, kernelH: 3, kernelW: 3,
          stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1, outHeight: 5, outWidth: 6,
        });
        const conv = gpu.dispatchCount - before;
        gpu.attention({ q, k: q, v: q, out: o, batch: 1, queries: 70, keys: 70, dim: 20, scale: 1 });
        const attn = gpu.dispatchCount - before - conv;
        if (cfg.limits) {
          expect(conv).toBeGreaterThan(1); // input channels split: later chunks accumulate into out
          expect(attn).toBeGreaterThan(2); // keys split: running max/sum carried between dispatches
        } else {
          expect([conv, attn]).toEqual([1, 1]);
        }
        await gpu.read(o, 1);
        for (const b of [x, w, out, q, o]) gpu.free(b);
      });

      it("write at an offset, partial read, alloc after free is zeroed", async () => {
        const b = gpu.alloc(50);
        gpu.write(b, Float32Array.from([1, 2, 3]), 47);
        gpu.write(b, Float32Array.from([9]), 0);
        const all = await gpu.read(b);
        expect(Array.from(all.slice(0, 2))).toEqual([9, 0]);
        expect(Array.from(all.slice(47))).toEqual([1, 2, 3]);
        expect(Array.from(await gpu.read(b, 1))).toEqual([9]);
        gpu.free(b);
        const c = gpu.alloc(50);
        expect((await gpu.read(c)).every((v) => v === 0)).toBe(true);
        gpu.free(c);
      });

      it("a long chain of queued ops (several automatic submits) before one read", async () => {
        const n = 300;
        const a = gpu.alloc(n), one = gpu.alloc(n);
        gpu.write(one, new Float32Array(n).fill(1));
        for (let i = 0; i < 150; i++) gpu.add({ a, b: one, out: a, length: n });
        expect((await gpu.read(a)).every((v) => v === 150)).toBe(true);
        gpu.free(a);
        gpu.free(one);
      });
    });
  }

  it("warmup compiles the common pipelines asynchronously; the SwiftShader adapter counts as software", async () => {
    await base.warmup(ACTIVATIONS);
    expect(isSoftwareAdapter(env.adapter!)).toBe(/swiftshader/i.test(base.description));
  });

  describe("errors", () => {
    it("rejects foreign or freed buffers, aliasing outputs and oversize buffers with AutoencoderKLError", async () => {
      const gpu = await createWebGPUBackend({ device: base.device, limits: { maxBufferSize: 4096, maxStorageBufferBindingSize: 2048 } });
      try {
        expect(() => gpu.alloc(2000)).toThrow(AutoencoderKLError);
        const ref = new ReferenceKernels().alloc(4);
        const b = gpu.alloc(4);
        expect(() => gpu.add({ a: ref, b, out: b, length: 4 })).toThrow(/not allocated by this backend/);
        expect(() => gpu.transpose({ x: b, out: b, batch: 1, rows: 2, cols: 2 })).toThrow(/alias/);
        expect(() => gpu.add({ a: b, b, out: b, length: 5 })).toThrow(/elements/);
        // one softmax row larger than the (lowered) binding limit cannot be split
        const big = gpu.alloc(1000);
        expect(() => gpu.softmax({ x: big, out: big, rows: 1, cols: 1000 })).toThrow(AutoencoderKLError);
        gpu.free(b);
        expect(() => gpu.free(b)).toThrow(/freed/);
        gpu.free(big);
      } finally {
        gpu.dispose();
      }
    });
  });

  describe("f16 storage", () => {
    it("conv2d, groupNorm and attention with f16 storage stay close to f32 (needs shader-f16)", async (ctx) => {
      if (!base.device.features.has("shader-f16")) {
        console.warn("[webgpu-kernels] f16 test skipped: the adapter has no shader-f16 feature");
        ctx.skip();
        return;
      }
      const gpu = await createWebGPUBackend({ device: base.device, f16: true });
      try {
        expect(gpu.f16).toBe(true);
        const N = 1, C = 8, H = 9, W = 7, O = 5;
        await compare(gpu, { x: randn(N * C * H * W), w: randn(O * C * 9, 0.2), b: randn(O), out: new Float32Array(N * O * H * W) }, (k, b) => k.conv2d({
          x: b.x, weight: b.w, bias: b.b, out: b.out, batch: N, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: 3, kernelW: 3,
          stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1, outHeight: H, outWidth: W,
        }), "out", 2e-2, 1e-2);
        await compare(gpu, { x: randn(2 * 6 * 35, 2, 3), g: randn(6, 1, 1), b: randn(6), out: new Float32Array(2 * 6 * 35) }, (k, b) =>
          k.groupNorm({ x: b.x, gamma: b.g, beta: b.b, out: b.out, batch: 2, channels: 6, spatial: 35, groups: 3, eps: 1e-6, activation: "silu" }), "out", 2e-2, 1e-2);
        await compare(gpu, { q: randn(37 * 20), k: randn(70 * 20), v: randn(70 * 20), out: new Float32Array(37 * 20) }, (k, b) =>
          k.attention({ q: b.q, k: b.k, v: b.v, out: b.out, batch: 1, queries: 37, keys: 70, dim: 20, scale: 0.2 }), "out", 2e-2, 1e-2);
        // odd offsets and lengths go through the f32 staging + cast path
        const buf = gpu.alloc(7);
        gpu.write(buf, Float32Array.from([0.5, -2, 3]), 3);
        expect(Array.from(await gpu.read(buf))).toEqual([0, 0, 0, 0.5, -2, 3, 0]);
        gpu.free(buf);
      } finally {
        gpu.dispose();
      }
    });
  });
});
