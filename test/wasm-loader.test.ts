// Where the kernels come from (src/backends/wasm/loader.ts): precompiled modules (one, or one per
// instruction set), bytes, URLs; linking a module to the memory kind it imports; errors that name the
// option. The runtimes that need modules (workerd, edge-runtime) are exercised in runtimes.test.ts.
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { withSharedMemoryImport } from "../src/backends/wasm/binary.js";
import { createWasmBackend, type WasmKernels } from "../src/backends/wasm/index.js";
import { AutoencoderKL, AutoencoderKLError, Tensor } from "../src/index.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";

const relaxed = enableRelaxedSimd();
const bytes = (name: string) => new Uint8Array(readFileSync(new URL(`../build/${name}`, import.meta.url)));
const simdModule = new WebAssembly.Module(bytes("kernels-simd.wasm"));
const relaxedModule = relaxed.ok ? new WebAssembly.Module(bytes("kernels-relaxed.wasm")) : null;
if (!relaxed.ok) console.warn(`relaxed-SIMD module cases skipped: ${relaxed.reason}`);

let made: WasmKernels[] = [];
afterEach(() => {
  for (const k of made) k.dispose();
  made = [];
});
async function make(options: Parameters<typeof createWasmBackend>[0]): Promise<WasmKernels> {
  const k = await createWasmBackend(options);
  made.push(k);
  return k;
}

/** Compiling from bytes must not happen when a module is given: count WebAssembly.compile calls. */
function countCompiles(): { count: () => number; restore: () => void } {
  const original = WebAssembly.compile;
  let n = 0;
  WebAssembly.compile = ((b: BufferSource) => {
    n++;
    return original(b);
  }) as typeof WebAssembly.compile;
  return { count: () => n, restore: () => void (WebAssembly.compile = original) };
}

describe("wasmModule", () => {
  it("a single Module runs as it is, whatever `relaxed` says; nothing is compiled", async () => {
    const c = countCompiles();
    try {
      const k = await make({ wasmModule: simdModule });
      expect(k.instructionSet).toBe("simd");
      expect(c.count()).toBe(0);
    } finally {
      c.restore();
    }
  });

  it.skipIf(!relaxed.ok)(
    "{ simd, relaxed } picks relaxed where the engine validates it; relaxed: false picks simd",
    async () => {
      expect((await make({ wasmModule: { simd: simdModule, relaxed: relaxedModule! } })).instructionSet).toBe(
        "relaxed-simd",
      );
      expect(
        (await make({ wasmModule: { simd: simdModule, relaxed: relaxedModule! }, relaxed: false })).instructionSet,
      ).toBe("simd");
      expect((await make({ wasmModule: { relaxed: relaxedModule! } })).instructionSet).toBe("relaxed-simd");
    },
  );

  it("shared memory where possible; threads share it with the given module", async () => {
    const k = await make({ wasmModule: { simd: simdModule }, threads: 2, parallelThresholdNs: 0 });
    expect(k.threads).toBe(2);
    expect(k.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    // an op split across both threads gives the single-thread result
    const x = k.alloc(1000),
      out = k.alloc(1000);
    const data = Float32Array.from({ length: 1000 }, (_, i) => i / 100 - 5);
    k.write(x, data);
    await k.activation({ x, out, length: 1000, activation: "relu" });
    expect(await k.read(out)).toEqual(data.map((v) => Math.max(v, 0)));
    expect(k.parallelOps).toBe(1);
  });

  it("a module compiled for an unshared memory gets one (one thread, with the reason)", async () => {
    const unshared = new WebAssembly.Module(withSharedMemoryImport(bytes("kernels-simd.wasm"), false) as BufferSource);
    const k = await make({ wasmModule: unshared, threads: 2 });
    expect(k.memory.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(k.threads).toBe(1);
    expect(k.threadFallback).toMatch(/no shared WebAssembly memory/);
  });

  it("the shipped (shared-import) module with sharedMemory: false cannot link, and the error says why", async () => {
    await expect(createWasmBackend({ wasmModule: simdModule, sharedMemory: false })).rejects.toThrow(
      /options\.wasmModule: cannot instantiate the kernels .*import a shared memory/,
    );
  });

  it("bad values are AutoencoderKLErrors naming the option", async () => {
    const bad: Array<[unknown, RegExp]> = [
      [new Uint8Array(8), /options\.wasmModule: must be a WebAssembly\.Module or \{ simd\?, relaxed\? \}/],
      [{}, /options\.wasmModule: holds neither simd nor relaxed/],
      [{ simd: bytes("kernels-simd.wasm") }, /options\.wasmModule\.simd: must be a WebAssembly\.Module/],
      [{ simd: simdModule, relaxed: "x" }, /options\.wasmModule\.relaxed: must be a WebAssembly\.Module/],
    ];
    for (const [wasmModule, message] of bad) {
      const p = createWasmBackend({ wasmModule: wasmModule as WebAssembly.Module });
      await expect(p).rejects.toThrow(AutoencoderKLError);
      await expect(p).rejects.toThrow(message);
    }
    await expect(createWasmBackend({ wasmModule: { simd: simdModule }, relaxed: true })).rejects.toThrow(
      /wasmModule\.relaxed is missing/,
    );
    await expect(createWasmBackend({ wasmModule: { relaxed: simdModule }, relaxed: false })).rejects.toThrow(
      /wasmModule\.simd is missing/,
    );
  });
});

describe("wasmBytes and wasmUrl", () => {
  it("bytes that are not the kernels, and URLs that cannot load, are AutoencoderKLErrors", async () => {
    await expect(createWasmBackend({ wasmBytes: new Uint8Array([1, 2, 3]) })).rejects.toThrow(AutoencoderKLError);
    await expect(createWasmBackend({ wasmBytes: "abc" as unknown as Uint8Array })).rejects.toThrow(
      /options\.wasmBytes: must be an ArrayBuffer or a Uint8Array/,
    );
    await expect(createWasmBackend({ wasmUrl: "http://[" })).rejects.toThrow(/options\.wasmUrl: is not a URL/);
    await expect(createWasmBackend({ wasmUrl: new URL("../build/missing.wasm", import.meta.url) })).rejects.toThrow(
      /wasmModule .*wasmBytes or wasmUrl/,
    );
  });

  it("an ArrayBuffer works as well as a Uint8Array", async () => {
    const b = bytes("kernels-simd.wasm");
    const k = await make({ wasmBytes: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer });
    expect(k.instructionSet).toBe("simd");
  });
});

describe("the model's loaders take the same options", () => {
  it("fromPretrained / fromConfig with wasmModule: same numbers as the default kernels, nothing compiled", async () => {
    const dir = new URL("../assets/demo-vae", import.meta.url).pathname;
    const z = new Tensor(
      Float32Array.from({ length: 16 * 4 * 4 }, (_, i) => Math.sin(i)),
      [1, 16, 4, 4],
    );
    const byDefault = await AutoencoderKL.fromPretrained(dir, { backend: "wasm", threads: 1 });
    const c = countCompiles();
    let given: AutoencoderKL;
    try {
      given = await AutoencoderKL.fromPretrained(dir, {
        backend: "wasm",
        threads: 1,
        wasmModule: { simd: simdModule, relaxed: relaxedModule ?? undefined },
      });
      expect(c.count()).toBe(0);
    } finally {
      c.restore();
    }
    try {
      expect(given.backendDescription).toBe(byDefault.backendDescription);
      expect((await given.decode(z)).sample.data).toEqual((await byDefault.decode(z)).sample.data);
      const empty = await AutoencoderKL.fromConfig(given.config, {
        backend: "wasm",
        threads: 1,
        wasmModule: simdModule,
      });
      expect(empty.backendDescription).toMatch(/^wasm \(simd/);
      empty.dispose();
    } finally {
      given.dispose();
      byDefault.dispose();
    }
  });
});
