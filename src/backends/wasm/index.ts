import { AutoencoderKLError } from "../../errors.js";
import { WINOGRAD_MIN_CHANNELS, type WinogradTile } from "../../ops/conv2d.js";
import { type Op, validate } from "../../ops/op.js";
import { installOps, type OpMethods } from "../../ops/registry.js";
import type { BufferDtype, DeviceBuffer, Kernels, MaybePromise } from "../kernels.js";
import { FreeListAllocator } from "./allocator.js";
import { type KernelSourceOptions, loadKernels } from "./loader.js";
import { ThreadPool } from "./pool.js";
import { type KernelExports, pack, type WasmRuntime, type WasmStep } from "./runtime.js";

export { wasmRelaxedSimdSupported, wasmSimdSupported } from "./binary.js";
export { isWasmModule, type KernelSourceOptions, type WasmModuleOption } from "./loader.js";

export interface WasmBackendOptions extends KernelSourceOptions {
  /**
   * Use the relaxed-SIMD build (fused multiply-add). "auto" (default): when the engine validates it
   * (with wasmModule: its relaxed module where given).
   */
  relaxed?: boolean | "auto";
  /** Threads including the calling one (default 1). Falls back to 1 where SharedArrayBuffer is unavailable. */
  threads?: number;
  /** Initial size of the WebAssembly memory (default 16 MiB); it grows on demand up to 4 GiB. */
  initialMemoryMiB?: number;
  /**
   * false: use an unshared WebAssembly memory even where shared ones exist (one thread). Default: shared
   * where SharedArrayBuffer is available.
   */
  sharedMemory?: boolean;
  /**
   * With threads: ops estimated to run shorter than this on one thread (nanoseconds, default 150 µs)
   * stay on the calling thread. 0 splits every op (tests).
   */
  parallelThresholdNs?: number;
  /**
   * 3×3 stride-1 pad-1 convolutions with at least this many input and output channels use Winograd
   * F(2×2, 3×3) (2.25× fewer multiplies); others the direct kernel. Default WINOGRAD_MIN_CHANNELS;
   * Infinity turns it off, 1 sends every such convolution through it (tests).
   */
  winogradMinChannels?: number;
  /**
   * Output tile of those Winograd convolutions: 2 = F(2×2, 3×3); 4 = F(4×4, 3×3) (4× fewer multiplies than
   * direct, ~1.5× faster than F(2×2), 1.5-3× its rounding error); "auto" (default): F(4×4) from
   * WINOGRAD4_MIN_CHANNELS input and output channels, F(2×2) below.
   */
  winogradTile?: WinogradTile;
  /**
   * How an upsampling conv's F(4×4) Winograd runs: phase kernels on its low-resolution input, 1, 2 or 4 a
   * pass (4 share one input transform but hold 4× the transformed weights), or "staged" (the upsampled
   * geometry, rows read upsampled while staging). "auto" (default): 4 or 2 where their weights fit
   * PHASE_U_BYTES, else staged. The others are there for tests.
   */
  upsamplePhases?: 1 | 2 | 4 | "staged" | "auto";
}

const PAGE = 65536;
const MAX_PAGES = 65536; // wasm32: 4 GiB
/** Bytes kept unallocated at the top of memory: kernels may read up to 64 bytes past an input's end. */
const GUARD = 256;

/** A block of the backend's linear memory holding `length` f32 values, or f16 bits (2 bytes each). */
class WasmBuffer implements DeviceBuffer {
  alive = true;
  constructor(
    readonly owner: WasmKernels,
    readonly ptr: number,
    readonly length: number,
    readonly bytes: number,
    readonly dtype: BufferDtype = "f32",
  ) {}
}

/** Ops estimated to run shorter than this on one thread stay on it: handing work to the workers costs ~50 µs. */
const PARALLEL_THRESHOLD_NS = 150_000;

// the op methods, installed below from the registry
export interface WasmKernels extends OpMethods {}

/**
 * The WASM SIMD backend. JS owns the WebAssembly memory: a first-fit free list hands out 16-byte aligned
 * blocks and grows the memory on demand. With threads, workers run the same kernels on the same (shared)
 * memory, each on its slice of the output; ops then return promises and run one at a time in call order
 * (read() waits for them). Await an op before write() or free() on the buffers it uses.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the op methods are declared by the interface of the same name, built from the op registry, and installed on the prototype
export class WasmKernels implements Kernels, WasmRuntime {
  readonly name = "wasm" as const;
  readonly description: string;
  /** "relaxed-simd" or "simd". */
  readonly instructionSet: "simd" | "relaxed-simd";
  readonly threads: number;
  /** Why fewer threads than asked for run (no SharedArrayBuffer, workers failed to start), else null. */
  readonly threadFallback: string | null;

  /** @internal WasmRuntime */
  readonly ex: KernelExports;
  private readonly allocator: FreeListAllocator;
  private readonly maxPages: number;
  private scratch: WasmBuffer | null = null;
  private queue: Promise<void> = Promise.resolve();
  private disposed = false;
  private readonly live = new Set<WasmBuffer>();
  /** Highest byte any block has reached (the touched part of linear memory). */
  private top = 0;
  /** Ops so far that were split across the worker threads (diagnostics and tests). */
  parallelOps = 0;
  /** See WasmBackendOptions.parallelThresholdNs. */
  parallelThresholdNs = PARALLEL_THRESHOLD_NS;
  /** See WasmBackendOptions.winogradMinChannels. */
  winogradMinChannels = WINOGRAD_MIN_CHANNELS;
  /** See WasmBackendOptions.winogradTile. */
  winogradTile: WinogradTile = "auto";
  /** See WasmBackendOptions.upsamplePhases. */
  upsamplePhases: 1 | 2 | 4 | "staged" | "auto" = "auto";

  /** @internal use createWasmBackend */
  constructor(
    readonly memory: WebAssembly.Memory,
    instance: WebAssembly.Instance,
    private readonly pool: ThreadPool | null,
    maxPages: number,
    threadFallback: string | null = null,
  ) {
    this.threadFallback = threadFallback;
    this.ex = instance.exports as unknown as KernelExports;
    // the module says which build it is (wasmBytes may hold either)
    const flag = instance.exports.RELAXED;
    this.instructionSet = flag instanceof WebAssembly.Global && flag.value ? "relaxed-simd" : "simd";
    this.threads = pool ? pool.size : 1;
    this.maxPages = maxPages;
    this.description = `wasm (${this.instructionSet}, ${this.threads} thread${this.threads === 1 ? "" : "s"})`;
    this.allocator = new FreeListAllocator(this.ex.heapBase(), memory.buffer.byteLength - GUARD);
  }

  // ---- memory ---------------------------------------------------------------------------------------

  alloc(length: number): DeviceBuffer {
    return this.allocOf(length, "f32", "alloc");
  }

  /** f16 values stay 2 bytes each in linear memory; the pack kernels widen them (assembly/half.ts). */
  allocHalf(length: number): DeviceBuffer {
    const b = this.allocOf(length, "f16", "allocHalf");
    new Uint8Array(this.memory.buffer, b.ptr, b.bytes).fill(0); // zeroed, as freed blocks are reused
    return b;
  }

  private allocOf(length: number, dtype: BufferDtype, call: string): WasmBuffer {
    this.checkAlive();
    if (!Number.isInteger(length) || length < 0) {
      throw new AutoencoderKLError(`wasm backend: ${call}`, `length must be a non-negative integer, got ${length}`);
    }
    const bytes = length * (dtype === "f16" ? 2 : 4);
    let ptr = this.allocator.alloc(bytes);
    if (ptr < 0) {
      this.grow(bytes);
      ptr = this.allocator.alloc(bytes);
      if (ptr < 0) throw this.outOfMemory(bytes);
    }
    const b = new WasmBuffer(this, ptr, length, bytes, dtype);
    this.live.add(b);
    this.top = Math.max(this.top, ptr + bytes);
    return b;
  }

  free(buffer: DeviceBuffer): void {
    const b = this.own(buffer, "buffer");
    b.alive = false;
    this.live.delete(b);
    this.allocator.free(b.ptr, b.bytes);
  }

  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    const b = this.checkWrite("write", buffer, "f32", data.length, offset);
    new Float32Array(this.memory.buffer, b.ptr + offset * 4, data.length).set(data);
  }

  writeHalf(buffer: DeviceBuffer, data: Uint16Array, offset = 0): void {
    const b = this.checkWrite("writeHalf", buffer, "f16", data.length, offset);
    new Uint16Array(this.memory.buffer, b.ptr + offset * 2, data.length).set(data);
  }

  private checkWrite(call: string, buffer: DeviceBuffer, dtype: BufferDtype, n: number, offset: number): WasmBuffer {
    const b = this.own(buffer, "buffer");
    if (b.dtype !== dtype) {
      throw new AutoencoderKLError(
        `wasm backend: ${call}`,
        `the buffer holds ${b.dtype} values; use ${b.dtype === "f16" ? "writeHalf" : "write"}`,
      );
    }
    if (!Number.isInteger(offset) || offset < 0 || offset + n > b.length) {
      throw new AutoencoderKLError(
        `wasm backend: ${call}`,
        `${n} values at offset ${offset} do not fit a buffer of ${b.length}`,
      );
    }
    return b;
  }

  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const b = this.own(buffer, "buffer");
    const n = length ?? b.length;
    if (!Number.isInteger(n) || n < 0 || n > b.length) {
      throw new AutoencoderKLError("wasm backend: read", `cannot read ${n} values from a buffer of ${b.length}`);
    }
    await this.queue; // threaded ops still in flight write into this memory
    if (b.dtype === "f16") {
      // widened by the kernels' own conversion (the one the pack kernels use), through a temporary block
      const tmp = this.allocOf(n, "f32", "read");
      try {
        this.ex.widenHalf(b.ptr, tmp.ptr, n, 0, 1);
        return new Float32Array(this.memory.buffer, tmp.ptr, n).slice();
      } finally {
        this.free(tmp);
      }
    }
    // slice() copies into a fresh (unshared) ArrayBuffer
    return new Float32Array(this.memory.buffer, b.ptr, n).slice();
  }

  /**
   * Bytes of linear memory, how much of it is free, live buffers, the kernels' scratch, and the high-water
   * mark: the highest byte any buffer has reached since creation (memory above it was never touched).
   */
  memoryStats(): {
    bytes: number;
    free: number;
    largestFree: number;
    buffers: number;
    scratchBytes: number;
    highWater: number;
  } {
    const s = this.allocator.stats();
    return {
      highWater: this.top,
      bytes: this.memory.buffer.byteLength,
      free: s.free,
      largestFree: s.largest,
      buffers: this.live.size - (this.scratch ? 1 : 0),
      scratchBytes: this.scratch?.bytes ?? 0,
    };
  }

  private grow(bytes: number): void {
    const have = this.memory.buffer.byteLength / PAGE;
    const short = this.allocator.shortfall(bytes);
    const need = Math.ceil((short + GUARD) / PAGE);
    if (have + need > this.maxPages) throw this.outOfMemory(bytes);
    // grow geometrically (fewer, larger steps), but settle for exactly what is needed if that fails
    const generous = Math.min(this.maxPages - have, Math.max(need, Math.min(have >> 1, 4096)));
    for (const pages of generous > need ? [generous, need] : [need]) {
      try {
        this.memory.grow(pages);
        this.allocator.extend(this.memory.buffer.byteLength - GUARD);
        return;
      } catch {
        // try the smaller step, then give up
      }
    }
    throw this.outOfMemory(bytes);
  }

  private outOfMemory(bytes: number): AutoencoderKLError {
    const s = this.allocator.stats();
    return new AutoencoderKLError(
      "wasm backend: alloc",
      `cannot allocate ${bytes} bytes: WebAssembly memory is ${this.memory.buffer.byteLength} bytes ` +
        `(largest free block ${s.largest}) and cannot grow past ${this.maxPages * PAGE} bytes`,
    );
  }

  private own(buffer: DeviceBuffer, what: string): WasmBuffer {
    this.checkAlive();
    if (!(buffer instanceof WasmBuffer) || buffer.owner !== this) {
      throw new AutoencoderKLError("wasm backend", `${what} was not allocated by this backend`);
    }
    if (!buffer.alive) throw new AutoencoderKLError("wasm backend", `${what} was already freed`);
    return buffer;
  }

  /** @internal WasmRuntime: the buffer's byte offset (0 for none); lengths were checked by the op's validate. */
  ptr(what: string, buffer: DeviceBuffer | null | undefined): number {
    return buffer ? this.own(buffer, what).ptr : 0;
  }

  /** The kernels' scratch, at least `bytes` long, with its first 16 bytes (conv2d's work counter) zeroed. */
  private scratchPtr(bytes: number): number {
    if (!this.scratch || this.scratch.bytes < bytes) {
      if (this.scratch) this.free(this.scratch);
      this.scratch = null;
      this.scratch = this.alloc(Math.ceil(Math.max(bytes, 16) / 4)) as WasmBuffer;
    }
    new Int32Array(this.memory.buffer, this.scratch.ptr, 4).fill(0);
    return this.scratch.ptr;
  }

  private checkAlive(): void {
    if (this.disposed) throw new AutoencoderKLError("wasm backend", "used after dispose()");
  }

  // ---- dispatch -------------------------------------------------------------------------------------

  /**
   * @internal WasmRuntime. Runs the steps, each with its arguments packed in the kernel's parameter order and
   * the scratch pointer (when `scratch` gives its size for nt threads), thread index and count appended; every
   * step uses the same thread count and scratch. Single-threaded: now, synchronously. Threaded: queued behind
   * earlier ops; ops estimated to take less than parallelThresholdNs run on this thread alone.
   */
  run(steps: readonly WasmStep[], costNs: number, scratch?: (nt: number) => number): MaybePromise {
    const packed = steps.map((s) => [s.kernel, pack(s)] as const);
    const call = (name: string, args: number[], extra: number[], tid: number, nt: number) =>
      (this.ex[name as keyof KernelExports] as (...a: number[]) => void)(...args, ...extra, tid, nt);
    const pool = this.pool;
    if (!pool) {
      const extra = scratch ? [this.scratchPtr(scratch(1))] : [];
      for (const [name, args] of packed) call(name, args, extra, 0, 1);
      return;
    }
    const go = async (): Promise<void> => {
      const nt = costNs >= this.parallelThresholdNs ? pool.size : 1;
      const extra = scratch ? [this.scratchPtr(scratch(nt))] : [];
      if (nt === 1) {
        for (const [name, args] of packed) call(name, args, extra, 0, 1);
        return;
      }
      this.parallelOps++;
      for (const [name, args] of packed)
        await pool.run(name, [...args, ...extra], (tid, n) => call(name, args, extra, tid, n));
    };
    const p = this.queue.then(go);
    this.queue = p.catch(() => undefined);
    return p;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool?.terminate();
    for (const b of this.live) b.alive = false;
    this.live.clear();
    this.scratch = null;
  }
}

installOps(
  WasmKernels.prototype,
  (op: Op<unknown>) =>
    function (this: WasmKernels, args: unknown): MaybePromise {
      validate("wasm", op, args);
      return op.wasm(this, args);
    },
);

// ---- creation --------------------------------------------------------------------------------------------

/**
 * Creates the WASM backend. relaxed: "auto" (default) uses the relaxed-SIMD build when
 * `wasmRelaxedSimdSupported()`; true insists on it (error if the engine lacks it). threads: default 1.
 */
export async function createWasmBackend(options: WasmBackendOptions = {}): Promise<WasmKernels> {
  const wantThreads = options.threads ?? 1;
  if (!Number.isInteger(wantThreads) || wantThreads < 1) {
    throw new AutoencoderKLError("wasm backend: threads", `must be a positive integer, got ${wantThreads}`);
  }
  const mib = options.initialMemoryMiB ?? 16;
  if (!(mib > 0) || mib > 4096) {
    throw new AutoencoderKLError("wasm backend: initialMemoryMiB", `must be in (0, 4096], got ${mib}`);
  }
  const { module, instance, memory, maxPages, shared } = await loadKernels({
    wasmModule: options.wasmModule,
    wasmBytes: options.wasmBytes,
    wasmUrl: options.wasmUrl,
    relaxed: options.relaxed ?? "auto",
    sharedMemory: options.sharedMemory,
    initialPages: Math.min(MAX_PAGES, Math.ceil((mib * 1024 * 1024) / PAGE)),
  });

  let pool: ThreadPool | null = null;
  let fallback: string | null = null;
  if (wantThreads > 1) {
    if (!shared) {
      fallback =
        options.sharedMemory === false
          ? "sharedMemory: false"
          : "no shared WebAssembly memory here (SharedArrayBuffer needs cross-origin isolation in browsers)";
    } else {
      try {
        pool = await ThreadPool.create(wantThreads, module, memory);
      } catch (e) {
        fallback = `worker threads failed to start: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }
  const k = new WasmKernels(memory, instance, pool, maxPages, fallback);
  if (options.parallelThresholdNs !== undefined) {
    if (!(options.parallelThresholdNs >= 0)) {
      throw new AutoencoderKLError(
        "wasm backend: parallelThresholdNs",
        `must be a non-negative number, got ${options.parallelThresholdNs}`,
      );
    }
    k.parallelThresholdNs = options.parallelThresholdNs;
  }
  if (options.winogradMinChannels !== undefined) {
    if (!(options.winogradMinChannels >= 1)) {
      throw new AutoencoderKLError(
        "wasm backend: winogradMinChannels",
        `must be a number >= 1, got ${options.winogradMinChannels}`,
      );
    }
    k.winogradMinChannels = options.winogradMinChannels;
  }
  if (options.winogradTile !== undefined) {
    if (options.winogradTile !== 2 && options.winogradTile !== 4 && options.winogradTile !== "auto") {
      throw new AutoencoderKLError(
        "wasm backend: winogradTile",
        `must be 2, 4 or "auto", got ${String(options.winogradTile)}`,
      );
    }
    k.winogradTile = options.winogradTile;
  }
  if (options.upsamplePhases !== undefined) {
    if (![1, 2, 4, "staged", "auto"].includes(options.upsamplePhases)) {
      throw new AutoencoderKLError(
        "wasm backend: upsamplePhases",
        `must be 1, 2, 4, "staged" or "auto", got ${String(options.upsamplePhases)}`,
      );
    }
    k.upsamplePhases = options.upsamplePhases;
  }
  return k;
}
