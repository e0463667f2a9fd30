// The WASM backend as a runtime: builds and thread counts, buffer ownership, memory growth, worker threads
// (bit-identical to one thread) and queue order. The kernels themselves are checked against the reference,
// with every other backend, in kernel-ops.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeviceBuffer, Kernels } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { FreeListAllocator } from "../src/backends/wasm/allocator.js";
import { createWasmBackend, type WasmKernels } from "../src/backends/wasm/index.js";
import { AutoencoderKLError } from "../src/errors.js";
import { f16BitsToF32 } from "../src/tensor/dtype.js";
import { generator } from "./helpers/random.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";

// Node 20 compiles relaxed SIMD only behind a V8 flag: switched on for this file's process (tests only).
const relaxed = enableRelaxedSimd();
const relaxedOk = relaxed.ok;
if (!relaxedOk) console.warn(`wasm-backend: skipping the relaxed-SIMD build: ${relaxed.reason}`);

// ---- helpers ------------------------------------------------------------------------------------------

const rng = generator;

const ref = new ReferenceKernels();

interface ConvCase {
  batch: number;
  C: number;
  H: number;
  W: number;
  O: number;
  KH: number;
  KW: number;
  stride: number;
  pad: [top: number, bottom: number, left: number, right: number];
}

function convOut(c: ConvCase): [number, number] {
  return [
    Math.floor((c.H + c.pad[0] + c.pad[1] - c.KH) / c.stride) + 1,
    Math.floor((c.W + c.pad[2] + c.pad[3] - c.KW) / c.stride) + 1,
  ];
}

// ---- once per build ------------------------------------------------------------------------

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
  {
    name: "simd, unshared memory",
    make: (o) => createWasmBackend({ relaxed: false, sharedMemory: false, ...o }),
    skip: false,
  },
];

for (const build of builds) {
  describe.skipIf(build.skip)(`wasm backend (${build.name})`, () => {
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
    const p1 = a.alloc(10),
      p2 = a.alloc(100),
      p3 = a.alloc(16);
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
    await expect(createWasmBackend({ wasmUrl: new URL("../build/missing.wasm", import.meta.url) })).rejects.toThrow(
      AutoencoderKLError,
    );
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
      await same(
        { x: r.data(c.batch * c.C * c.H * c.W), w: r.data(c.O * c.C * c.KH * c.KW), b: r.data(c.O), res: r.data(outN) },
        outN,
        (kk, b, out) =>
          kk.conv2d({
            x: b.x,
            weight: b.w,
            bias: b.b,
            residual: b.res,
            out,
            batch: c.batch,
            inChannels: c.C,
            inHeight: c.H,
            inWidth: c.W,
            outChannels: c.O,
            kernelH: c.KH,
            kernelW: c.KW,
            stride: c.stride,
            padTop: c.pad[0],
            padBottom: c.pad[1],
            padLeft: c.pad[2],
            padRight: c.pad[3],
            outHeight: OH,
            outWidth: OW,
          }),
      );
    }
  });

  it("linear, matmul, attention, softmax", async () => {
    const r = rng(901);
    await same({ x: r.data(301 * 96), w: r.data(70 * 96), b: r.data(70) }, 301 * 70, (kk, b, out) =>
      kk.linear({ x: b.x, weight: b.w, bias: b.b, out, rows: 301, inFeatures: 96, outFeatures: 70 }),
    );
    for (const transposeB of [false, true]) {
      await same({ a: r.data(3 * 77 * 65), b: r.data(3 * 65 * 59) }, 3 * 77 * 59, (kk, b, out) =>
        kk.matmul({ a: b.a, b: b.b, out, batch: 3, m: 77, n: 59, k: 65, transposeB, alpha: 0.5 }),
      );
    }
    await same(
      { q: r.data(2 * 130 * 40), k: r.data(2 * 150 * 40), v: r.data(2 * 150 * 40) },
      2 * 130 * 40,
      (kk, b, out) =>
        kk.attention({ q: b.q, k: b.k, v: b.v, out, batch: 2, queries: 130, keys: 150, dim: 40, scale: 0.3 }),
    );
    await same({ x: r.data(333 * 257, -5, 5) }, 333 * 257, (kk, b, out) =>
      kk.softmax({ x: b.x, out, rows: 333, cols: 257 }),
    );
  });

  it("groupNorm, channelAffine, activation, add, upsample, transpose, copy", async () => {
    const r = rng(902);
    const [C, S] = [64, 67 * 71];
    await same({ x: r.data(2 * C * S, -2, 3), g: r.data(C), b: r.data(C) }, 2 * C * S, (kk, b, out) =>
      kk.groupNorm({
        x: b.x,
        gamma: b.g,
        beta: b.b,
        out,
        batch: 2,
        channels: C,
        spatial: S,
        groups: 16,
        eps: 1e-6,
        activation: "silu",
      }),
    );
    await same({ x: r.data(2 * C * S), s: r.data(2 * C), t: r.data(2 * C) }, 2 * C * S, (kk, b, out) =>
      kk.channelAffine({ x: b.x, scale: b.s, shift: b.t, out, batch: 2, channels: C, spatial: S, activation: "gelu" }),
    );
    const n = 300_001;
    await same({ x: r.data(n, -9, 9) }, n, (kk, b, out) =>
      kk.activation({ x: b.x, out, length: n, activation: "mish" }),
    );
    await same({ a: r.data(n), b: r.data(n) }, n, (kk, b, out) => kk.add({ a: b.a, b: b.b, out, length: n }));
    await same({ x: r.data(70 * 41 * 43) }, 4 * 70 * 41 * 43, (kk, b, out) =>
      kk.upsampleNearest2x({ x: b.x, out, planes: 70, height: 41, width: 43 }),
    );
    await same({ x: r.data(3 * 301 * 299) }, 3 * 301 * 299, (kk, b, out) =>
      kk.transpose({ x: b.x, out, batch: 3, rows: 301, cols: 299 }),
    );
    await same({ x: r.data(600 * 500) }, 700 * 520, (kk, b, out) =>
      kk.copy({ x: b.x, out, rows: 599, cols: 450, xOffset: 7, xRowStride: 500, outOffset: 3, outRowStride: 520 }),
    );
  });

  it("ops called without awaiting still run in order", async () => {
    const n = 400_000;
    const a = two.alloc(n),
      b = two.alloc(n);
    two.write(a, new Float32Array(n).fill(1));
    two.write(b, new Float32Array(n).fill(2));
    const pending = [
      two.add({ a, b, out: a, length: n }),
      two.add({ a, b, out: a, length: n }),
      two.activation({ x: a, out: a, length: n, activation: "relu" }),
    ];
    const got = await two.read(a, 3); // read waits for everything queued before it
    expect(Array.from(got)).toEqual([5, 5, 5]);
    await Promise.all(pending);
    two.free(a);
    two.free(b);
  });
});

describe("wasm backend Winograd tile", () => {
  /** One 3×3 stride-1 pad-1 conv of C → O channels at 6×7 on a backend made with these options. */
  async function conv(o: MakeOptions, C: number, O: number): Promise<Float32Array> {
    const k = await createWasmBackend({ relaxed: false, ...o });
    const g = rng(C * 1000 + O);
    const [x, w, bias, out] = [k.alloc(C * 42), k.alloc(O * C * 9), k.alloc(O), k.alloc(O * 42)];
    k.write(x, g.data(C * 42));
    k.write(w, g.data(O * C * 9, -0.1, 0.1));
    k.write(bias, g.data(O));
    const p = { kernelH: 3, kernelW: 3, stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1 };
    await k.conv2d({
      x,
      weight: w,
      bias,
      out,
      batch: 1,
      inChannels: C,
      inHeight: 6,
      inWidth: 7,
      outChannels: O,
      ...p,
      outHeight: 6,
      outWidth: 7,
    });
    const got = await k.read(out);
    k.dispose();
    return got;
  }

  it('"auto" runs F(4×4) from 128 input and output channels, F(2×2) below', async () => {
    for (const [C, O, tile] of [
      [128, 130, 4],
      [64, 128, 2],
      [128, 100, 2],
    ] as const) {
      const auto = await conv({}, C, O);
      const f2 = await conv({ winogradTile: 2 }, C, O);
      const f4 = await conv({ winogradTile: 4 }, C, O);
      // the two tiles round differently, so the output tells which one ran
      expect(f2, `${C}→${O}`).not.toEqual(f4);
      expect(auto, `${C}→${O}`).toEqual(tile === 4 ? f4 : f2);
    }
  });

  it("rejects a tile other than 2, 4 or auto", async () => {
    await expect(createWasmBackend({ winogradTile: 3 as unknown as 2 })).rejects.toThrow(AutoencoderKLError);
    await expect(createWasmBackend({ winogradTile: 3 as unknown as 2 })).rejects.toThrow(/winogradTile.*got 3/);
  });
});

// The Winograd weight transforms alone, through the kernel exports: U = G g Gᵀ against the exact value (BigInt
// arithmetic, rounded to nearest f32 once), in the layout the convolutions read, for every thread split.
describe("wasm Winograd weight transforms", () => {
  const OB = 6; // output channels per panel (assembly/gemm.ts MR)
  // G as integers over a common denominator: G = N / L, so U = N g Nᵀ / L²
  const TILES = [
    {
      name: "F(2×2)",
      pack: "winogradPack",
      scratch: "winogradScratchBytes",
      L: 2n,
      N: [
        [2, 0, 0],
        [1, 1, 1],
        [1, -1, 1],
        [0, 0, 2],
      ],
    },
    {
      name: "F(4×4)",
      pack: "winograd4Pack",
      scratch: "winograd4ScratchBytes",
      L: 15n,
      N: [
        [15, 0, 0],
        [-5, -5, -5],
        [5, -5, 5],
        [1, 2, 4],
        [-16, 8, -4],
        [0, 0, 15],
      ],
    },
  ] as const;
  const H = 6;
  const W = 7;

  const f32Bits = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];

  /** A finite f32 times 2^149: an integer. */
  function scaled(x: number): bigint {
    const b = f32Bits(x);
    const e = (b >>> 23) & 0xff;
    const m = BigInt(e === 0 ? b & 0x7fffff : (b & 0x7fffff) | 0x800000) << BigInt(Math.max(e - 1, 0));
    return b >>> 31 ? -m : m;
  }

  /** num / den (den > 0) rounded to the nearest f32, ties to even. */
  function nearestF32(num: bigint, den: bigint): number {
    if (num === 0n) return 0;
    const neg = num < 0n;
    const n = neg ? -num : num;
    let e = n.toString(2).length - den.toString(2).length - 24;
    const quotient = (e: number) => {
      const a = e < 0 ? n << BigInt(-e) : n;
      const b = e > 0 ? den << BigInt(e) : den;
      return [a / b, a % b, b];
    };
    let [q, r, b] = quotient(e);
    while (q >= 1n << 24n) [q, r, b] = quotient(++e);
    while (q < 1n << 23n && e > -149) [q, r, b] = quotient(--e);
    if (2n * r > b || (2n * r === b && q & 1n)) q++;
    const v = Number(q) * 2 ** e;
    return neg ? -v : v;
  }

  /** Distance in f32 steps (±0 the same point). */
  function ulps(a: number, b: number): number {
    const ord = (x: number) => {
      const u = f32Bits(x);
      return u >>> 31 ? -(u & 0x7fffffff) : u;
    };
    return Math.abs(ord(a) - ord(b));
  }

  /** U of w ([O][C][3][3]; f16 bits when a Uint16Array) as [p][o][c], packed by nt threads in turn. */
  function packU(
    k: WasmKernels,
    tile: (typeof TILES)[number],
    w: Float32Array | Uint16Array,
    O: number,
    C: number,
    nt: number,
    phases?: { np: number; p0: number },
  ): { u: Float32Array; padding: Float32Array } {
    const P = tile.N.length ** 2;
    const O0 = O;
    // an upsampling pass: np·O rows, row o' the phase p0 + o' % np of channel o' / np
    if (phases) O *= phases.np;
    const NB = Math.ceil(O / OB);
    const wb = w instanceof Uint16Array ? k.allocHalf(w.length) : k.alloc(w.length);
    if (w instanceof Uint16Array) k.writeHalf(wb, w);
    else k.write(wb, w);
    const bytes = (n: number) => k.ex[tile.scratch](C, H, W, O, n);
    const scratchBytes = bytes(nt);
    // bytes between positions: U is the scratch less its 16-byte header and the per-thread regions
    const stride = (2 * bytes(1) - bytes(2) - 16) / P;
    const s = k.alloc(Math.ceil(scratchBytes / 4));
    const ptrOf = (b: DeviceBuffer) => (b as unknown as { ptr: number }).ptr; // WasmBuffer's byte offset
    const ptr = ptrOf(s);
    for (let tid = 0; tid < nt; tid++) {
      if (tile.pack === "winograd4Pack") {
        const { np, p0 } = phases ?? { np: 0, p0: 0 };
        k.ex.winograd4Pack(ptrOf(wb), w instanceof Uint16Array, O0, C, W, np, p0, ptr, tid, nt);
      } else k.ex.winogradPack(ptrOf(wb), w instanceof Uint16Array, O, C, W, ptr, tid, nt);
    }
    const mem = new Float32Array(k.memory.buffer);
    const u = new Float32Array(P * O * C);
    const padding: number[] = [];
    for (let p = 0; p < P; p++) {
      for (let o = 0; o < NB * OB; o++) {
        for (let c = 0; c < C; c++) {
          const v = mem[(ptr + 16 + p * stride + ((Math.floor(o / OB) * C + c) * OB + (o % OB)) * 4) / 4];
          if (o < O) u[(p * O + o) * C + c] = v;
          else padding.push(v);
        }
      }
    }
    k.free(s);
    k.free(wb);
    return { u, padding: Float32Array.from(padding) };
  }

  for (const b of builds) {
    for (const tile of TILES) {
      it.skipIf(b.skip)(`${b.name}: ${tile.name} U = G g Gᵀ rounded once (within 1 ulp), zero past O`, async () => {
        const k = await b.make();
        const g = rng(tile.N.length * 97);
        const n = tile.N.length;
        let values = 0;
        let exact = 0;
        for (const [O, C, nt] of [
          [13, 21, 1],
          [6, 16, 2],
          [20, 37, 3],
          [7, 64, 2],
          [12, 48, 2],
          [2, 3, 1],
        ]) {
          // uniform in [-1, 1), and (odd thread counts) at magnitudes 2^-12 .. 2^12: weights of a wide range
          const w = g.data(O * C * 9).map((x) => (nt % 2 ? x * 2 ** g.int(-12, 12) : x));
          const { u, padding } = packU(k, tile, w, O, C, nt);
          expect(padding.every((v) => v === 0)).toBe(true);
          const den = tile.L * tile.L * 2n ** 149n;
          for (let o = 0; o < O; o++) {
            for (let c = 0; c < C; c++) {
              const gi = Array.from(w.subarray((o * C + c) * 9, (o * C + c + 1) * 9), scaled);
              for (let i = 0; i < n; i++) {
                for (let j = 0; j < n; j++) {
                  let x = 0n;
                  for (let a = 0; a < 3; a++)
                    for (let bb = 0; bb < 3; bb++) x += BigInt(tile.N[i][a] * tile.N[j][bb]) * gi[a * 3 + bb];
                  const want = nearestF32(x, den);
                  const got = u[((i * n + j) * O + o) * C + c];
                  const d = ulps(got, want);
                  if (d > 1) expect(got, `${O}→${C} o ${o} c ${c} position ${i * n + j}`).toBe(want);
                  values++;
                  if (d === 0) exact++;
                }
              }
            }
          }
        }
        // one rounding from an (almost always) exact value: all but a rare tie-straddling case are the
        // correctly rounded f32
        expect(exact / values).toBeGreaterThan(0.9999);
        k.dispose();
      });

      // F(2×2) upsamples while staging its input rows: only F(4×4) has phase kernels
      if (tile.pack === "winograd4Pack")
        it.skipIf(b.skip)(
          `${b.name}: ${tile.name} phase kernels of an upsampling conv: U of the merged kernel rounded once`,
          async () => {
            const k = await b.make();
            const g = rng(31);
            const n = tile.N.length;
            const den = tile.L * tile.L * 2n ** 149n;
            // phase a merges kernel rows (or b columns) 3 → 3 with one row zero: a = 0 (r0, r1 + r2, 0), a = 1 (0, r0 + r1, r2)
            const merge = [
              [[0], [1, 2], []],
              [[], [0, 1], [2]],
            ];
            let values = 0;
            let exact = 0;
            for (const [O, C, nt, np, p0] of [
              [5, 19, 2, 4, 0],
              [7, 16, 1, 2, 2],
              [4, 9, 3, 1, 1],
              [3, 7, 2, 1, 2],
            ]) {
              const w = g.data(O * C * 9).map((x) => x * 2 ** g.int(-6, 6));
              const { u, padding } = packU(k, tile, w, O, C, nt, { np, p0 });
              expect(padding.every((v) => v === 0)).toBe(true);
              for (let q = 0; q < np * O; q++) {
                const o = Math.floor(q / np),
                  ph = p0 + (q % np);
                const [ra, rb] = [merge[ph >> 1], merge[ph & 1]];
                for (let c = 0; c < C; c++) {
                  const gi = Array.from(w.subarray((o * C + c) * 9, (o * C + c + 1) * 9), scaled);
                  const merged = (r: number, col: number) => {
                    let x = 0n;
                    for (const a of ra[r]) for (const bb of rb[col]) x += gi[a * 3 + bb];
                    return x;
                  };
                  for (let i = 0; i < n; i++) {
                    for (let j = 0; j < n; j++) {
                      let x = 0n;
                      for (let a = 0; a < 3; a++)
                        for (let bb = 0; bb < 3; bb++) x += BigInt(tile.N[i][a] * tile.N[j][bb]) * merged(a, bb);
                      const want = nearestF32(x, den);
                      const got = u[((i * n + j) * np * O + q) * C + c];
                      if (ulps(got, want) > 1)
                        expect(got, `np ${np} p0 ${p0} row ${q} c ${c} position ${i * n + j}`).toBe(want);
                      values++;
                      if (got === want) exact++;
                    }
                  }
                }
              }
            }
            expect(exact / values).toBeGreaterThan(0.9999);
            k.dispose();
          },
        );

      it.skipIf(b.skip)(`${b.name}: ${tile.name} from f16 weights equals the f32 pack of the same values`, async () => {
        const k = await b.make();
        // every f16 bit pattern (±0, subnormals, ±inf, NaN payloads) once, 61 output × 120 input channels
        const O = 61;
        const C = 120;
        const half = Uint16Array.from({ length: O * C * 9 }, (_, i) => (i * 40503) & 0xffff);
        const fromHalf = packU(k, tile, half, O, C, 2);
        const fromF32 = packU(k, tile, Float32Array.from(half, f16BitsToF32), O, C, 2);
        expect(new Set(half).size).toBe(65536);
        expect(new Uint32Array(fromHalf.u.buffer)).toEqual(new Uint32Array(fromF32.u.buffer));
        k.dispose();
      });
    }
  }
});
