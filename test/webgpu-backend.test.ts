import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTIVATIONS, type DeviceBuffer, type Kernels, type MaybePromise } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import {
  createWebGPUBackend,
  isSoftwareAdapter,
  type WebGPUKernels,
  type WebGPULimits,
} from "../src/backends/webgpu/index.js";
import { AutoencoderKLError } from "../src/errors.js";
import { acquireTestGPU } from "./helpers/webgpu-env.js";

// The WebGPU backend as a runtime, once with the device's limits and once with limits lowered so far that
// every op is split into many dispatches: dispatch counts, offsets and partial reads, queued submits,
// pipeline warm-up, errors, f16 storage. The WGSL kernels themselves are checked against the reference, with
// every other backend, in kernel-ops.test.ts.

const env = await acquireTestGPU();
if (env.reason) console.warn(`[webgpu-backend] skipping the WebGPU backend suite: ${env.reason}`);

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
const randn = (n: number, scale = 1, shift = 0): Float32Array =>
  Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale + shift);

/** |got - want| <= atol + rtol * |want| everywhere; reports the worst element. */
function expectClose(got: Float32Array, want: Float32Array, atol = 1e-4, rtol = 1e-4, what = ""): void {
  expect(got.length).toBe(want.length);
  let worst = -1,
    ratio = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const r = d === 0 ? 0 : d / (atol + rtol * Math.abs(want[i]));
    if (!(r <= ratio)) {
      ratio = r;
      worst = i;
      if (Number.isNaN(r)) break;
    }
  }
  if (!(ratio <= 1))
    expect.fail(`${what} element ${worst}: got ${got[worst]}, want ${want[worst]} (${want.length} elements)`);
}

type Op = (k: Kernels, b: Record<string, DeviceBuffer>) => MaybePromise;

/** Runs `op` on both backends with the same host inputs and compares the buffer named `result`. */
async function compare(
  gpu: Kernels,
  inputs: Record<string, Float32Array>,
  op: Op,
  result: string,
  atol = 1e-4,
  rtol = 1e-4,
): Promise<void> {
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

const LOWERED: Partial<WebGPULimits> = { maxStorageBufferBindingSize: 2048, maxComputeWorkgroupsPerDimension: 2 };

describe.skipIf(!env.adapter)("webgpu backend", () => {
  let base: WebGPUKernels;
  beforeAll(async () => {
    base = await createWebGPUBackend({ adapter: env.adapter });
  });
  afterAll(() => base?.dispose());

  for (const cfg of [
    { name: "device limits", limits: undefined },
    { name: "lowered limits (forced splitting)", limits: LOWERED },
  ]) {
    describe(cfg.name, () => {
      let gpu: WebGPUKernels;
      beforeAll(async () => {
        gpu = cfg.limits ? await createWebGPUBackend({ device: base.device, limits: cfg.limits }) : base;
      });
      afterAll(() => {
        if (gpu !== base) gpu?.dispose();
      });

      it(cfg.limits ? "big ops are split into many dispatches" : "small ops take one dispatch each", async () => {
        const x = gpu.alloc(37 * 30),
          w = gpu.alloc(4 * 37 * 9),
          out = gpu.alloc(4 * 30);
        const q = gpu.alloc(70 * 20),
          o = gpu.alloc(70 * 20);
        const before = gpu.dispatchCount;
        gpu.conv2d({
          x,
          weight: w,
          bias: null,
          out,
          batch: 1,
          inChannels: 37,
          inHeight: 5,
          inWidth: 6,
          outChannels: 4,
          kernelH: 3,
          kernelW: 3,
          stride: 1,
          padTop: 1,
          padBottom: 1,
          padLeft: 1,
          padRight: 1,
          outHeight: 5,
          outWidth: 6,
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
        const a = gpu.alloc(n),
          one = gpu.alloc(n);
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
      const gpu = await createWebGPUBackend({
        device: base.device,
        limits: { maxBufferSize: 4096, maxStorageBufferBindingSize: 2048 },
      });
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
        console.warn("[webgpu-backend] f16 test skipped: the adapter has no shader-f16 feature");
        ctx.skip();
        return;
      }
      const gpu = await createWebGPUBackend({ device: base.device, f16: true });
      try {
        expect(gpu.f16).toBe(true);
        const N = 1,
          C = 8,
          H = 9,
          W = 7,
          O = 5;
        await compare(
          gpu,
          { x: randn(N * C * H * W), w: randn(O * C * 9, 0.2), b: randn(O), out: new Float32Array(N * O * H * W) },
          (k, b) =>
            k.conv2d({
              x: b.x,
              weight: b.w,
              bias: b.b,
              out: b.out,
              batch: N,
              inChannels: C,
              inHeight: H,
              inWidth: W,
              outChannels: O,
              kernelH: 3,
              kernelW: 3,
              stride: 1,
              padTop: 1,
              padBottom: 1,
              padLeft: 1,
              padRight: 1,
              outHeight: H,
              outWidth: W,
            }),
          "out",
          2e-2,
          1e-2,
        );
        await compare(
          gpu,
          { x: randn(2 * 6 * 35, 2, 3), g: randn(6, 1, 1), b: randn(6), out: new Float32Array(2 * 6 * 35) },
          (k, b) =>
            k.groupNorm({
              x: b.x,
              gamma: b.g,
              beta: b.b,
              out: b.out,
              batch: 2,
              channels: 6,
              spatial: 35,
              groups: 3,
              eps: 1e-6,
              activation: "silu",
            }),
          "out",
          2e-2,
          1e-2,
        );
        await compare(
          gpu,
          { q: randn(37 * 20), k: randn(70 * 20), v: randn(70 * 20), out: new Float32Array(37 * 20) },
          (k, b) =>
            k.attention({ q: b.q, k: b.k, v: b.v, out: b.out, batch: 1, queries: 37, keys: 70, dim: 20, scale: 0.2 }),
          "out",
          2e-2,
          1e-2,
        );
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
