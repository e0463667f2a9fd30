// weightDtype "f16": conv and linear weights stay f16 in backend memory and the kernels widen them while
// packing. Checked here: the widening itself (all 65536 values, bit for bit), the ops (an f16 weight gives
// exactly what the same values as f32 give), whole models (decode and encode bit-identical to loading the
// same fp16 file as f32, on every wasm build, thread count and conv path), memory (about half), streaming
// (validation from the header before any tensor byte is read) and every bad-input rule.
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import type { DeviceBuffer, Kernels } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { createWasmBackend, type WasmKernels } from "../src/backends/wasm/index.js";
import { createWebGPUBackend } from "../src/backends/webgpu/index.js";
import { AutoencoderKLError } from "../src/errors.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl/autoencoder-kl.js";
import { f16BytesToF32, f32ToF16 } from "../src/tensor/dtype.js";
import { Tensor } from "../src/tensor/tensor.js";
import { FIXTURES } from "./helpers/fixtures.js";
import { xorshift32 } from "./helpers/random.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";
import { acquireTestGPU } from "./helpers/webgpu-env.js";

const relaxed = enableRelaxedSimd();
if (!relaxed.ok) console.warn(`weight-dtype: skipping the relaxed-SIMD backend: ${relaxed.reason}`);

const gpuEnv = await acquireTestGPU();
if (gpuEnv.reason) console.warn(`weight-dtype: skipping the WebGPU cases: ${gpuEnv.reason}`);
// one device for every case (an adapter gives one), with shader-f16 where the adapter has it
const gpuDevice = gpuEnv.adapter
  ? createWebGPUBackend({ adapter: gpuEnv.adapter, f16: true }).then((b) => b.device)
  : undefined;
const gpuConfigs = gpuEnv.adapter
  ? [
      { name: "webgpu (f32 storage)", make: async () => createWebGPUBackend({ device: await gpuDevice }) },
      ...(gpuEnv.adapter.features.has("shader-f16")
        ? [
            {
              name: "webgpu (f16 storage)",
              make: async () => createWebGPUBackend({ device: await gpuDevice, f16: true }),
            },
          ]
        : []),
    ]
  : [];

const SDLIKE = `${FIXTURES}models/sdlike`;
const isas = [{ relaxed: false, name: "simd" }, ...(relaxed.ok ? [{ relaxed: true, name: "relaxed" }] : [])];

const rng = xorshift32;
const randomData = (n: number, seed: number) => {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
};
/** Random finite f16 bit patterns, subnormals and zeros of both signs included. */
const randomHalves = (n: number, seed: number) => {
  const r = rng(seed);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let h: number;
    do h = Math.floor(r() * 65536);
    while ((h & 0x7c00) === 0x7c00 || (h & 0x7fff) > 0x3c00); // finite, |w| ≤ 1 so sums stay tame
    out[i] = h;
  }
  return out;
};
/** The JS conversion, bit for bit (the table path: a NaN through a JS number could lose its payload). */
const widen = (h: Uint16Array) => f16BytesToF32(new Uint8Array(h.buffer, h.byteOffset, h.byteLength));

function expectBitIdentical(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let bad = -1;
  for (let i = 0; i < a.length && bad < 0; i++) if (a[i] !== b[i]) bad = i;
  if (bad >= 0) expect.fail(`${what}: element ${bad}: got ${got[bad]}, want ${want[bad]} (bit-identical expected)`);
}

describe("f16 widening", () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const want = widen(all);

  for (const isa of isas) {
    it(`wasm ${isa.name}: every one of the 65536 f16 values widens to the bits src/tensor/dtype.ts gives`, async () => {
      const k = await createWasmBackend({ relaxed: isa.relaxed });
      try {
        const b = k.allocHalf(65536);
        expect(b.dtype).toBe("f16");
        k.writeHalf(b, all);
        // read() widens with the kernels' own conversion (assembly/half.ts, shared with the pack kernels)
        const got = await k.read(b);
        // NaNs compared by their bits too: payload and sign are kept
        expectBitIdentical(got, want, `wasm ${isa.name}`);
        expect(k.memoryStats().buffers).toBe(1);
      } finally {
        k.dispose();
      }
    });
  }

  it("reference: half buffers hold the same widened values", async () => {
    const k = new ReferenceKernels();
    const b = k.allocHalf(65536);
    k.writeHalf(b, all);
    expectBitIdentical(await k.read(b), want, "reference");
  });

  it("an f16 buffer takes 2 bytes per value in wasm memory", async () => {
    const k = await createWasmBackend({ relaxed: false });
    try {
      const before = k.memoryStats().free;
      const b = k.allocHalf(1 << 20);
      expect(before - k.memoryStats().free).toBe(2 << 20);
      k.free(b);
      const c = k.alloc(1 << 20);
      expect(before - k.memoryStats().free).toBe(4 << 20);
      k.free(c);
    } finally {
      k.dispose();
    }
  });
});

// ---- ops: an f16 weight equals the same values as f32, bit for bit ------------------------------------------

interface OpRun {
  name: string;
  /** Runs the op with this weight buffer; returns the output. */
  run(k: Kernels, weight: DeviceBuffer): Promise<Float32Array>;
  weights: number;
}

function convRun(name: string, C: number, O: number, H: number, W: number, KH: number, stride: number, pad: number[]) {
  const [pt, pb, pl, pr] = pad;
  const OH = Math.floor((H + pt + pb - KH) / stride) + 1,
    OW = Math.floor((W + pl + pr - KH) / stride) + 1;
  const x = randomData(2 * C * H * W, 1),
    bias = randomData(O, 2),
    res = randomData(2 * O * OH * OW, 3);
  return {
    name,
    weights: O * C * KH * KH,
    async run(k: Kernels, weight: DeviceBuffer) {
      const bx = k.alloc(x.length),
        bb = k.alloc(O),
        br = k.alloc(res.length),
        out = k.alloc(2 * O * OH * OW);
      k.write(bx, x);
      k.write(bb, bias);
      k.write(br, res);
      await k.conv2d({
        ...{ x: bx, weight, bias: bb, residual: br, out, batch: 2, inChannels: C, inHeight: H, inWidth: W },
        ...{ outChannels: O, kernelH: KH, kernelW: KH, stride, padTop: pt, padBottom: pb, padLeft: pl, padRight: pr },
        ...{ outHeight: OH, outWidth: OW },
      });
      const got = await k.read(out);
      for (const b of [bx, bb, br, out]) k.free(b);
      return got;
    },
  } satisfies OpRun;
}

const linearRun = (rows: number, inF: number, outF: number): OpRun => {
  const x = randomData(rows * inF, 4),
    bias = randomData(outF, 5);
  return {
    name: `linear ${rows}x${inF}→${outF}`,
    weights: inF * outF,
    async run(k, weight) {
      const bx = k.alloc(x.length),
        bb = k.alloc(outF),
        out = k.alloc(rows * outF);
      k.write(bx, x);
      k.write(bb, bias);
      await k.linear({ x: bx, weight, bias: bb, out, rows, inFeatures: inF, outFeatures: outF });
      const got = await k.read(out);
      for (const b of [bx, bb, out]) k.free(b);
      return got;
    },
  };
};

const opRuns: OpRun[] = [
  convRun("conv2d 3x3 (direct or Winograd)", 20, 13, 9, 11, 3, 1, [1, 1, 1, 1]),
  convRun("conv2d 3x3 stride 2 (Downsample2D padding)", 7, 10, 9, 8, 3, 2, [0, 1, 0, 1]),
  convRun("conv2d 1x1", 17, 9, 5, 6, 1, 1, [0, 0, 0, 0]),
  linearRun(10, 19, 13),
  linearRun(7, 16, 24), // whole 8-column tiles: the f32 path's register-transpose branch
];

const wasmConfigs = isas.flatMap((isa) =>
  [1, 2].flatMap((threads) =>
    [
      [1, 2],
      [1, 4],
      [Infinity, 2],
    ].map(([wino, tile]) => ({
      name: `wasm ${isa.name}, ${threads} thread${threads > 1 ? "s" : ""}, ${wino === 1 ? `Winograd F(${tile}×${tile}) forced` : "Winograd off"}`,
      make: () =>
        createWasmBackend({
          relaxed: isa.relaxed,
          threads,
          winogradMinChannels: wino,
          winogradTile: tile as 2 | 4,
          parallelThresholdNs: 0, // split every op across the threads
        }),
    })),
  ),
);

describe("ops with f16 weights", () => {
  const configs: { name: string; make: () => Promise<Kernels> }[] = [
    ...wasmConfigs,
    { name: "reference", make: async () => new ReferenceKernels() },
    ...gpuConfigs,
  ];
  for (const cfg of configs) {
    it(`${cfg.name}: conv2d and linear give exactly what the widened f32 weights give`, async () => {
      const k = await cfg.make();
      try {
        for (const op of opRuns) {
          const halves = randomHalves(op.weights, op.weights);
          const w16 = k.allocHalf(op.weights);
          k.writeHalf(w16, halves);
          const w32 = k.alloc(op.weights);
          k.write(w32, widen(halves));
          expectBitIdentical(await op.run(k, w16), await op.run(k, w32), `${cfg.name}: ${op.name}`);
          k.free(w16);
          k.free(w32);
        }
      } finally {
        k.dispose();
      }
    });
  }
});

for (const cfg of gpuConfigs) {
  describe(`${cfg.name}: f16 weights`, () => {
    it("all 65536 f16 values unpack in the shaders as the f32 weights load (linear, one input of 1)", async () => {
      const k = await cfg.make();
      try {
        const n = 65536;
        const halves = Uint16Array.from({ length: n }, (_, i) => i);
        const x = k.alloc(1),
          out16 = k.alloc(n),
          out32 = k.alloc(n);
        k.write(x, Float32Array.of(1));
        const w16 = k.allocHalf(n),
          w32 = k.alloc(n);
        k.writeHalf(w16, halves);
        k.write(w32, widen(halves));
        await k.linear({ x, weight: w16, bias: null, out: out16, rows: 1, inFeatures: 1, outFeatures: n });
        await k.linear({ x, weight: w32, bias: null, out: out32, rows: 1, inFeatures: 1, outFeatures: n });
        const [a, b] = [await k.read(out16), await k.read(out32)];
        for (let i = 0; i < n; i++) {
          if (!Object.is(a[i], b[i]) && !(Number.isNaN(a[i]) && Number.isNaN(b[i])))
            expect.fail(`f16 ${i.toString(16)}: got ${a[i]}, the f32 weight gives ${b[i]}`);
        }
        // and the buffer reads back widened, bit for bit
        const want = widen(halves);
        const back = await k.read(w16);
        for (let i = 0; i < n; i++) {
          if (!Object.is(back[i], want[i]) && !(Number.isNaN(back[i]) && Number.isNaN(want[i])))
            expect.fail(`read ${i.toString(16)}: got ${back[i]}, want ${want[i]}`);
        }
      } finally {
        k.dispose();
      }
    });

    it("writeHalf at odd offsets and lengths keeps the neighbouring values", async () => {
      const k = await cfg.make();
      try {
        const b = k.allocHalf(9);
        k.writeHalf(
          b,
          Uint16Array.from({ length: 9 }, () => 0x3c00),
        ); // 1.0 everywhere
        k.writeHalf(b, Uint16Array.of(0x4000, 0x4200, 0x4400), 3); // 2, 3, 4 at elements 3..5
        k.writeHalf(b, Uint16Array.of(0xc000), 8); // -2 at the last element
        k.writeHalf(b, Uint16Array.of(0x3800, 0x3400), 0); // 0.5, 0.25 at 0..1 (aligned)
        expect([...(await k.read(b))]).toEqual([0.5, 0.25, 1, 2, 3, 4, 1, 1, -2]);
      } finally {
        k.dispose();
      }
    });

    it("weight memory is 2 bytes per value", async () => {
      const k = await cfg.make();
      try {
        const b = k.allocHalf(1000) as unknown as { eb: number; dtype: string };
        expect(b.eb).toBe(2);
        expect(b.dtype).toBe("f16");
      } finally {
        k.dispose();
      }
    });

    it("decode is bit-identical to the fp16 file loaded as f32 (mid-block attention)", async () => {
      const k = await cfg.make();
      const a = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k });
      const b = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k, weightDtype: "f16" });
      try {
        const z = new Tensor(randomData(1 * 4 * 4 * 3, 11), [1, 4, 4, 3]);
        expectBitIdentical((await b.decode(z)).sample.data, (await a.decode(z)).sample.data, `${cfg.name} decode`);
      } finally {
        a.dispose();
        b.dispose();
        k.dispose();
      }
    });
  });
}

// ---- models ---------------------------------------------------------------------------------------------

describe("models with weightDtype f16", () => {
  const z = new Tensor(randomData(1 * 4 * 6 * 5, 7), [1, 4, 6, 5]);
  const x = new Tensor(randomData(1 * 3 * 24 * 16, 8), [1, 3, 24, 16]);

  for (const cfg of wasmConfigs) {
    it(`${cfg.name}: decode and encode are bit-identical to the fp16 file loaded as f32 (mid-block attention)`, async () => {
      const k = await cfg.make();
      const a = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k });
      const b = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k, weightDtype: "f16" });
      try {
        expect(a.weightDtype).toBe("f32");
        expect(b.weightDtype).toBe("f16");
        expectBitIdentical((await b.decode(z)).sample.data, (await a.decode(z)).sample.data, `${cfg.name} decode`);
        const [ea, eb] = [(await a.encode(x)).latentDist, (await b.encode(x)).latentDist];
        expectBitIdentical(eb.mean.data, ea.mean.data, `${cfg.name} encode mean`);
        expectBitIdentical(eb.logvar.data, ea.logvar.data, `${cfg.name} encode logvar`);
      } finally {
        a.dispose();
        b.dispose();
        k.dispose();
      }
    });
  }

  it("fused q/k/v projections stay f16 and decode the same as the f32 model's", async () => {
    const k = await createWasmBackend({ relaxed: false });
    const a = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k });
    const b = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k, weightDtype: "f16" });
    try {
      a.fuseQkvProjections();
      b.fuseQkvProjections();
      expectBitIdentical((await b.decode(z)).sample.data, (await a.decode(z)).sample.data, "fused decode");
    } finally {
      a.dispose();
      b.dispose();
      k.dispose();
    }
  });

  it("the reference backend gives the same bits with f16 weights", async () => {
    const a = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", backend: "reference" });
    const b = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", backend: "reference", weightDtype: "f16" });
    try {
      const small = new Tensor(randomData(1 * 4 * 3 * 2, 9), [1, 4, 3, 2]);
      expectBitIdentical((await b.decode(small)).sample.data, (await a.decode(small)).sample.data, "reference decode");
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it("wasm memory after load is about half of the f32 model's", async () => {
    /** Bytes handed out by the allocator while loading (memory growth adds free space, not used space). */
    const loaded = async (weightDtype: "f32" | "f16") => {
      const k = await createWasmBackend({ relaxed: false, initialMemoryMiB: 1 });
      const s0 = k.memoryStats();
      const vae = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", kernels: k, weightDtype });
      const s1 = k.memoryStats();
      vae.dispose();
      k.dispose();
      return s1.bytes - s1.free - (s0.bytes - s0.free);
    };
    const f32 = await loaded("f32"),
      f16 = await loaded("f16");
    console.info(`weight-dtype: sdlike weights in wasm memory: f32 ${f32} bytes, f16 ${f16} bytes`);
    // conv and linear weights halve; biases and GroupNorm γ/β (< 1% here) stay f32
    expect(f16 / f32).toBeGreaterThan(0.49);
    expect(f16 / f32).toBeLessThan(0.52);
  });

  it("stateDict() returns the widened values: the fp16 file's, exactly", async () => {
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { variant: "fp16", backend: "wasm", weightDtype: "f16" });
    try {
      const file = readSafetensors(
        new Uint8Array(readFileSync(`${SDLIKE}/diffusion_pytorch_model.fp16.safetensors`)),
      ).tensors;
      const got = await vae.stateDict();
      expect([...got.keys()].sort()).toEqual([...file.keys()].sort());
      for (const [key, t] of got) expectBitIdentical(t.data, file.get(key)!.data, key);
    } finally {
      vae.dispose();
    }
  });

  it("an f32 file is rounded to f16 (nearest even) on load: the same as loading the rounded values as f32", async () => {
    const file = readSafetensors(new Uint8Array(readFileSync(`${SDLIKE}/diffusion_pytorch_model.safetensors`))).tensors;
    const k = await createWasmBackend({ relaxed: false });
    const config = JSON.parse(readFileSync(`${SDLIKE}/config.json`, "utf8"));
    const b = await AutoencoderKL.fromPretrained(SDLIKE, { kernels: k, weightDtype: "f16" });
    const a = await AutoencoderKL.fromConfig(config, { kernels: k });
    try {
      const rounded = new Map<string, Tensor>();
      for (const [key, t] of file) {
        // only conv and linear weights are held as f16
        rounded.set(key, t.shape.length >= 2 ? new Tensor(widen(f32ToF16(t.data)), t.shape) : t);
      }
      await a.loadStateDict(rounded);
      expectBitIdentical((await b.decode(z)).sample.data, (await a.decode(z)).sample.data, "rounded decode");
      const sd = await b.stateDict();
      for (const [key, t] of rounded) expectBitIdentical(sd.get(key)!.data, t.data, key);
      // at least one weight really was rounded (the f32 file is not f16-exact)
      const w = file.get("decoder.conv_in.weight")!;
      expect(sd.get("decoder.conv_in.weight")!.data.some((v, i) => v !== w.data[i])).toBe(true);
    } finally {
      a.dispose();
      b.dispose();
      k.dispose();
    }
  });

  it("fromSingleFile and fromConfig + loadStateDict take weightDtype too", async () => {
    const config = JSON.parse(readFileSync(`${SDLIKE}/config.json`, "utf8"));
    const single = await AutoencoderKL.fromSingleFile(`${FIXTURES}models/sdlike-single-file.safetensors`, {
      config,
      backend: "wasm",
      weightDtype: "f16",
    });
    const viaMap = await AutoencoderKL.fromConfig(config, { backend: "wasm", weightDtype: "f16" });
    try {
      expect(single.weightDtype).toBe("f16");
      await viaMap.loadStateDict(await single.stateDict());
      expectBitIdentical((await viaMap.decode(z)).sample.data, (await single.decode(z)).sample.data, "single file");
    } finally {
      single.dispose();
      viaMap.dispose();
    }
  });
});

// ---- streaming --------------------------------------------------------------------------------------------

/** A Blob that records the byte ranges read from it. */
function countingBlob(bytes: Uint8Array<ArrayBuffer>): { blob: Blob; reads: [number, number][] } {
  const reads: [number, number][] = [];
  const blob = new Blob([bytes]);
  const slice = blob.slice.bind(blob);
  Object.defineProperty(blob, "slice", {
    value: (start = 0, end = bytes.length) => {
      reads.push([start, end]);
      return slice(start, end);
    },
  });
  Object.defineProperty(blob, "arrayBuffer", {
    value: () => Promise.reject(new Error("the whole file was read")),
  });
  return { blob, reads };
}

describe("streamed loading", () => {
  const bytes = new Uint8Array(readFileSync(`${FIXTURES}models/sdlike-single-file.safetensors`));
  const dataStart = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));

  it("reads the tensors by ranges, never the whole file", async () => {
    const { blob, reads } = countingBlob(bytes);
    const vae = await AutoencoderKL.fromSingleFile(blob, { backend: "wasm", weightDtype: "f16" });
    vae.dispose();
    expect(reads.some(([s]) => s >= dataStart)).toBe(true);
    expect(reads.every(([s, e]) => e - s < bytes.length)).toBe(true);
  });

  it("wrong shapes are reported from the header, before any tensor byte is read", async () => {
    const { blob, reads } = countingBlob(bytes);
    const config = JSON.parse(readFileSync(`${SDLIKE}/config.json`, "utf8"));
    await expect(
      AutoencoderKL.fromSingleFile(blob, { config: { ...config, latent_channels: 8 }, backend: "wasm" }),
    ).rejects.toThrow(/weights do not match the config: .*wrong shapes/);
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every(([, e]) => e <= dataStart)).toBe(true);
  });
});

// ---- bad input --------------------------------------------------------------------------------------------

describe("weightDtype bad input", () => {
  const config = () => JSON.parse(readFileSync(`${SDLIKE}/config.json`, "utf8"));
  const rule = /options\.weightDtype.*must be "f32" or "f16", got "f8"/;

  it("fromConfig, fromPretrained and fromSingleFile reject an unknown weightDtype", async () => {
    const bad = { weightDtype: "f8" as never, backend: "reference" as const };
    await expect(AutoencoderKL.fromConfig(config(), bad)).rejects.toThrow(rule);
    await expect(AutoencoderKL.fromPretrained(SDLIKE, bad)).rejects.toThrow(rule);
    await expect(
      AutoencoderKL.fromSingleFile(`${FIXTURES}models/sdlike-single-file.safetensors`, bad),
    ).rejects.toBeInstanceOf(AutoencoderKLError);
    await expect(AutoencoderKL.fromSingleFile(`${FIXTURES}models/sdlike-single-file.safetensors`, bad)).rejects.toThrow(
      rule,
    );
  });

  const backends: { name: string; make: () => Promise<Kernels> }[] = [
    { name: "reference", make: async () => new ReferenceKernels() },
    { name: "wasm", make: () => createWasmBackend({ relaxed: false }) },
  ];
  const made: Kernels[] = [];
  afterAll(() => {
    for (const k of made) k.dispose();
  });
  for (const be of backends) {
    it(`${be.name}: write/writeHalf refuse the other dtype, overruns and bad lengths`, async () => {
      const k = await be.make();
      made.push(k);
      const h = k.allocHalf(4),
        f = k.alloc(4);
      const where = `${be.name} backend`;
      expect(() => k.write(h, new Float32Array(4))).toThrow(`${where}: write`);
      expect(() => k.write(h, new Float32Array(4))).toThrow(/holds f16 values; use writeHalf/);
      expect(() => k.writeHalf(f, new Uint16Array(4))).toThrow(/holds f32 values; use write\b/);
      expect(() => k.writeHalf(h, new Uint16Array(3), 2)).toThrow(/3 values at offset 2 do not fit a buffer of 4/);
      expect(() => k.writeHalf(h, new Uint16Array(1), -1)).toThrow(AutoencoderKLError);
      expect(() => k.allocHalf(-1)).toThrow(/length must be a non-negative integer, got -1/);
      expect(() => k.allocHalf(1.5)).toThrow(AutoencoderKLError);
      k.writeHalf(h, Uint16Array.of(0x3c00, 0xc000), 1);
      expect([...(await k.read(h))]).toEqual([0, 1, -2, 0]);
    });
  }

  it("wasm: a freed or foreign half buffer is refused", async () => {
    const k = (await createWasmBackend({ relaxed: false })) as WasmKernels;
    made.push(k);
    const h = k.allocHalf(4);
    k.free(h);
    expect(() => k.writeHalf(h, new Uint16Array(4))).toThrow(/already freed/);
    expect(() => k.writeHalf(new ReferenceKernels().allocHalf(4), new Uint16Array(4))).toThrow(
      /not allocated by this backend/,
    );
  });
});
