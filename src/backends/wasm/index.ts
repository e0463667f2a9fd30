import { AutoencoderKLError } from "../../errors.js";
import type {
  Activation, ActivationArgs, AddArgs, AttentionArgs, ChannelAffineArgs, Conv2dArgs, CopyArgs, DeviceBuffer,
  GroupNormArgs, Kernels, LinearArgs, MatmulArgs, SoftmaxArgs, TransposeArgs, Upsample2xArgs,
} from "../kernels.js";
import { FreeListAllocator } from "./allocator.js";
import { importsSharedMemory, wasmRelaxedSimdSupported, wasmSimdSupported, withSharedMemoryImport } from "./binary.js";
import { ThreadPool } from "./pool.js";

export { wasmRelaxedSimdSupported, wasmSimdSupported } from "./binary.js";

export interface WasmBackendOptions {
  /** Use the relaxed-SIMD build (fused multiply-add). "auto" (default): when the engine validates it. */
  relaxed?: boolean | "auto";
  /** Threads including the calling one (default 1). Falls back to 1 where SharedArrayBuffer is unavailable. */
  threads?: number;
  /** Initial size of the WebAssembly memory (default 16 MiB); it grows on demand up to 4 GiB. */
  initialMemoryMiB?: number;
  /** The kernels' .wasm bytes, instead of loading build/kernels-{simd,relaxed}.wasm. */
  wasmBytes?: ArrayBuffer | Uint8Array;
  /** Where to load the .wasm from, instead of the build/ folder next to this package. */
  wasmUrl?: string | URL;
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
}

/** Below this many channels the transforms cost more than the multiplies they save (measured). */
const WINOGRAD_MIN_CHANNELS = 16;

const PAGE = 65536;
const MAX_PAGES = 65536; // wasm32: 4 GiB
/** Bytes kept unallocated at the top of memory: kernels may read up to 64 bytes past an input's end. */
const GUARD = 256;

/** The kernels' exports (see assembly/index.ts); every pointer is a byte offset. */
interface KernelExports {
  heapBase(): number;
  add(a: number, b: number, out: number, length: number, tid: number, nt: number): void;
  activation(x: number, out: number, length: number, act: number, tid: number, nt: number): void;
  upsampleNearest2x(x: number, out: number, planes: number, h: number, w: number, tid: number, nt: number): void;
  transpose(x: number, out: number, batch: number, rows: number, cols: number, tid: number, nt: number): void;
  groupNorm(...args: number[]): void;
  linear(...args: number[]): void;
  matmul(...args: number[]): void;
  softmax(x: number, out: number, rows: number, cols: number, tid: number, nt: number): void;
  attention(...args: number[]): void;
  attentionScratchBytes(dim: number): number;
  matmulScratchBytes(n: number, k: number): number;
  conv2d(...args: number[]): void;
  conv2dPack(...args: number[]): void;
  conv2dScratchBytes(...args: number[]): number;
  winograd(...args: number[]): void;
  winogradPack(...args: number[]): void;
  winogradScratchBytes(C: number, H: number, W: number, O: number, nt: number): number;
  channelAffine(...args: number[]): void;
  copy2d(...args: number[]): void;
}
type KernelName = Exclude<
  keyof KernelExports,
  "heapBase" | "attentionScratchBytes" | "conv2dScratchBytes" | "matmulScratchBytes" | "winogradScratchBytes"
>;

const ACTIVATION_CODE: Record<Activation, number> = { none: 0, silu: 1, mish: 2, gelu: 3, relu: 4 };

/** A block of the backend's linear memory holding `length` f32 values. */
class WasmBuffer implements DeviceBuffer {
  alive = true;
  constructor(
    readonly owner: WasmKernels,
    readonly ptr: number,
    readonly length: number,
    readonly bytes: number,
  ) {}
}

/**
 * Rough single-thread cost of an op, in nanoseconds, from counts (measured on a 2.x GHz x86 core): ops
 * estimated below PARALLEL_THRESHOLD_NS run on the calling thread alone, since handing work to the workers and
 * hearing back costs ~50 µs.
 */
const NS_PER_MAC = 0.05;
const NS_PER_ELEMENT = 0.5; // memory-bound passes
const NS_PER_TRANSCENDENTAL = 2.5; // exp-based activations, softmax
const PARALLEL_THRESHOLD_NS = 150_000;

/**
 * The WASM SIMD backend. JS owns the WebAssembly memory: a first-fit free list hands out 16-byte aligned
 * blocks and grows the memory on demand. With threads, workers run the same kernels on the same (shared)
 * memory, each on its slice of the output; ops then return promises and run one at a time in call order
 * (read() waits for them). Await an op before write() or free() on the buffers it uses.
 */
export class WasmKernels implements Kernels {
  readonly name = "wasm" as const;
  readonly description: string;
  /** "relaxed-simd" or "simd". */
  readonly instructionSet: "simd" | "relaxed-simd";
  readonly threads: number;
  /** Why fewer threads than asked for run (no SharedArrayBuffer, workers failed to start), else null. */
  readonly threadFallback: string | null;

  private readonly ex: KernelExports;
  private readonly allocator: FreeListAllocator;
  private readonly maxPages: number;
  private scratch: WasmBuffer | null = null;
  private queue: Promise<void> = Promise.resolve();
  private disposed = false;
  private readonly live = new Set<WasmBuffer>();
  /** Ops so far that were split across the worker threads (diagnostics and tests). */
  parallelOps = 0;
  /** See WasmBackendOptions.parallelThresholdNs. */
  parallelThresholdNs = PARALLEL_THRESHOLD_NS;
  /** See WasmBackendOptions.winogradMinChannels. */
  winogradMinChannels = WINOGRAD_MIN_CHANNELS;

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
    this.checkAlive();
    if (!Number.isInteger(length) || length < 0) {
      throw new AutoencoderKLError("wasm backend: alloc", `length must be a non-negative integer, got ${length}`);
    }
    const bytes = length * 4;
    let ptr = this.allocator.alloc(bytes);
    if (ptr < 0) {
      this.grow(bytes);
      ptr = this.allocator.alloc(bytes);
      if (ptr < 0) throw this.outOfMemory(bytes);
    }
    const b = new WasmBuffer(this, ptr, length, bytes);
    this.live.add(b);
    return b;
  }

  free(buffer: DeviceBuffer): void {
    const b = this.own(buffer, "buffer");
    b.alive = false;
    this.live.delete(b);
    this.allocator.free(b.ptr, b.bytes);
  }

  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    const b = this.own(buffer, "buffer");
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > b.length) {
      throw new AutoencoderKLError(
        "wasm backend: write",
        `${data.length} values at offset ${offset} do not fit a buffer of ${b.length}`,
      );
    }
    new Float32Array(this.memory.buffer, b.ptr + offset * 4, data.length).set(data);
  }

  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const b = this.own(buffer, "buffer");
    const n = length ?? b.length;
    if (!Number.isInteger(n) || n < 0 || n > b.length) {
      throw new AutoencoderKLError("wasm backend: read", `cannot read ${n} values from a buffer of ${b.length}`);
    }
    await this.queue; // threaded ops still in flight write into this memory
    // slice() copies into a fresh (unshared) ArrayBuffer
    return new Float32Array(this.memory.buffer, b.ptr, n).slice();
  }

  /** Bytes of linear memory, how much of it is free, live buffers and the kernels' scratch (diagnostics). */
  memoryStats(): { bytes: number; free: number; largestFree: number; buffers: number; scratchBytes: number } {
    const s = this.allocator.stats();
    return {
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

  /** The buffer's pointer after checking it holds at least `need` values. */
  private ptr(op: string, what: string, buffer: DeviceBuffer, need: number): number {
    const b = this.own(buffer, `${op}: ${what}`);
    if (b.length < need) {
      throw new AutoencoderKLError(`wasm backend: ${op}`, `${what} holds ${b.length} values, needs ${need}`);
    }
    return b.ptr;
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
   * Runs kernel `name` with `args`, then the `then` steps, each with the scratch pointer (when `scratch`
   * gives its size for nt threads) and the thread index and count appended; every step uses the same
   * thread count and scratch. Single-threaded: now, synchronously. Threaded: queued behind earlier ops;
   * ops estimated to take less than parallelThresholdNs run on this thread alone.
   */
  private run(
    name: KernelName, args: number[], costNs: number, scratch?: (nt: number) => number,
    then: Array<[KernelName, number[]]> = [],
  ): void | Promise<void> {
    const steps: Array<[KernelName, number[]]> = [[name, args], ...then];
    const call = (step: [KernelName, number[]], extra: number[], tid: number, nt: number) =>
      (this.ex[step[0]] as (...a: number[]) => void)(...step[1], ...extra, tid, nt);
    const pool = this.pool;
    if (!pool) {
      const extra = scratch ? [this.scratchPtr(scratch(1))] : [];
      for (const step of steps) call(step, extra, 0, 1);
      return;
    }
    const go = async (): Promise<void> => {
      const nt = costNs >= this.parallelThresholdNs ? pool.size : 1;
      const extra = scratch ? [this.scratchPtr(scratch(nt))] : [];
      if (nt === 1) {
        for (const step of steps) call(step, extra, 0, 1);
        return;
      }
      this.parallelOps++;
      for (const step of steps) await pool.run(step[0], [...step[1], ...extra], (tid, n) => call(step, extra, tid, n));
    };
    const p = this.queue.then(go);
    this.queue = p.catch(() => undefined);
    return p;
  }

  // ---- ops ------------------------------------------------------------------------------------------

  conv2d(p: Conv2dArgs): void | Promise<void> {
    const op = "conv2d";
    const { batch, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: s } = p;
    positive(op, { batch, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: s });
    nonNegative(op, { padTop: p.padTop, padBottom: p.padBottom, padLeft: p.padLeft, padRight: p.padRight });
    const OH = Math.floor((H + p.padTop + p.padBottom - KH) / s) + 1;
    const OW = Math.floor((W + p.padLeft + p.padRight - KW) / s) + 1;
    if (p.outHeight !== OH || p.outWidth !== OW || OH < 1 || OW < 1) {
      throw new AutoencoderKLError(
        "wasm backend: conv2d",
        `output ${p.outHeight}x${p.outWidth} does not match input ${H}x${W}, kernel ${KH}x${KW}, stride ${s} ` +
          `and padding (${p.padTop}, ${p.padBottom}, ${p.padLeft}, ${p.padRight}): expected ${OH}x${OW}`,
      );
    }
    noAlias(op, p.out, { x: p.x, weight: p.weight, bias: p.bias, residual: p.residual });
    const outN = batch * O * OH * OW;
    const weight = this.ptr(op, "weight", p.weight, O * C * KH * KW);
    const args = [
      this.ptr(op, "x", p.x, batch * C * H * W),
      p.bias ? this.ptr(op, "bias", p.bias, O) : 0,
      p.residual ? this.ptr(op, "residual", p.residual, outN) : 0,
      this.ptr(op, "out", p.out, outN),
      batch, C, H, W, O, KH, KW, s, p.padTop, p.padLeft, OH, OW,
    ];
    const ex = this.ex;
    const pads = [p.padTop, p.padBottom, p.padLeft, p.padRight];
    if (KH === 3 && KW === 3 && s === 1 && pads.every((v) => v === 1) && Math.min(C, O) >= this.winogradMinChannels) {
      // transform the weights into the scratch (threads split output channels), then the tiled GEMMs
      const wargs = [args[0], args[1], args[2], args[3], batch, C, H, W, O];
      return this.run(
        "winogradPack", [weight, O, C, W], (outN * C * 4 * NS_PER_MAC),
        (nt) => ex.winogradScratchBytes(C, H, W, O, nt),
        [["winograd", wargs]],
      );
    }
    // two steps on one scratch: pack the weights (threads split output channels), then convolve
    return this.run(
      "conv2dPack", [weight, O, C, KH, KW], outN * C * KH * KW * NS_PER_MAC,
      (nt) => ex.conv2dScratchBytes(C, H, W, O, KH, KW, s, p.padTop, p.padLeft, OH, OW, nt),
      [["conv2d", args]],
    );
  }

  groupNorm(p: GroupNormArgs): void | Promise<void> {
    const op = "groupNorm";
    positive(op, { batch: p.batch, channels: p.channels, spatial: p.spatial, groups: p.groups });
    if (p.channels % p.groups !== 0) {
      throw new AutoencoderKLError("wasm backend: groupNorm", `groups (${p.groups}) must divide channels (${p.channels})`);
    }
    const n = p.batch * p.channels * p.spatial;
    noAlias(op, p.out, { gamma: p.gamma, beta: p.beta });
    const args = [
      this.ptr(op, "x", p.x, n),
      this.ptr(op, "gamma", p.gamma, p.channels),
      this.ptr(op, "beta", p.beta, p.channels),
      this.ptr(op, "out", p.out, n),
      p.batch, p.channels, p.spatial, p.groups, p.eps, activationCode(op, p.activation),
    ];
    return this.run("groupNorm", args, n * (p.activation === "none" || p.activation === "relu" ? 2 * NS_PER_ELEMENT : NS_PER_TRANSCENDENTAL));
  }

  linear(p: LinearArgs): void | Promise<void> {
    const op = "linear";
    positive(op, { rows: p.rows, inFeatures: p.inFeatures, outFeatures: p.outFeatures });
    noAlias(op, p.out, { x: p.x, weight: p.weight, bias: p.bias });
    const args = [
      this.ptr(op, "x", p.x, p.rows * p.inFeatures),
      this.ptr(op, "weight", p.weight, p.outFeatures * p.inFeatures),
      p.bias ? this.ptr(op, "bias", p.bias, p.outFeatures) : 0,
      this.ptr(op, "out", p.out, p.rows * p.outFeatures),
      p.rows, p.inFeatures, p.outFeatures,
    ];
    const per = this.ex.matmulScratchBytes(p.outFeatures, p.inFeatures);
    return this.run("linear", args, p.rows * p.inFeatures * p.outFeatures * NS_PER_MAC, (nt) => nt * per);
  }

  matmul(p: MatmulArgs): void | Promise<void> {
    const op = "matmul";
    positive(op, { batch: p.batch, m: p.m, n: p.n, k: p.k });
    noAlias(op, p.out, { a: p.a, b: p.b });
    const args = [
      this.ptr(op, "a", p.a, p.batch * p.m * p.k),
      this.ptr(op, "b", p.b, p.batch * p.k * p.n),
      this.ptr(op, "out", p.out, p.batch * p.m * p.n),
      p.batch, p.m, p.n, p.k, p.transposeB ? 1 : 0, p.alpha,
    ];
    const per = this.ex.matmulScratchBytes(p.n, p.k);
    return this.run("matmul", args, p.batch * p.m * p.n * p.k * NS_PER_MAC, (nt) => nt * per);
  }

  softmax(p: SoftmaxArgs): void | Promise<void> {
    const op = "softmax";
    positive(op, { rows: p.rows, cols: p.cols });
    const n = p.rows * p.cols;
    return this.run("softmax", [this.ptr(op, "x", p.x, n), this.ptr(op, "out", p.out, n), p.rows, p.cols], n * NS_PER_TRANSCENDENTAL);
  }

  attention(p: AttentionArgs): void | Promise<void> {
    const op = "attention";
    positive(op, { batch: p.batch, queries: p.queries, keys: p.keys, dim: p.dim });
    noAlias(op, p.out, { q: p.q, k: p.k, v: p.v });
    const args = [
      this.ptr(op, "q", p.q, p.batch * p.queries * p.dim),
      this.ptr(op, "k", p.k, p.batch * p.keys * p.dim),
      this.ptr(op, "v", p.v, p.batch * p.keys * p.dim),
      this.ptr(op, "out", p.out, p.batch * p.queries * p.dim),
      p.batch, p.queries, p.keys, p.dim, p.scale,
    ];
    const per = this.ex.attentionScratchBytes(p.dim);
    // a 16-byte work counter (zeroed by scratchPtr), then one block per thread
    return this.run("attention", args, 2 * p.batch * p.queries * p.keys * p.dim * NS_PER_MAC, (nt) => 16 + nt * per);
  }

  add(p: AddArgs): void | Promise<void> {
    const op = "add";
    nonNegative(op, { length: p.length });
    if (p.length === 0) return;
    const args = [
      this.ptr(op, "a", p.a, p.length),
      this.ptr(op, "b", p.b, p.length),
      this.ptr(op, "out", p.out, p.length),
      p.length,
    ];
    return this.run("add", args, p.length * NS_PER_ELEMENT);
  }

  activation(p: ActivationArgs): void | Promise<void> {
    const op = "activation";
    nonNegative(op, { length: p.length });
    const code = activationCode(op, p.activation);
    if (p.length === 0) return;
    const args = [this.ptr(op, "x", p.x, p.length), this.ptr(op, "out", p.out, p.length), p.length, code];
    return this.run("activation", args, p.length * (code === 0 || code === 4 ? NS_PER_ELEMENT : NS_PER_TRANSCENDENTAL));
  }

  upsampleNearest2x(p: Upsample2xArgs): void | Promise<void> {
    const op = "upsampleNearest2x";
    positive(op, { planes: p.planes, height: p.height, width: p.width });
    noAlias(op, p.out, { x: p.x });
    const n = p.planes * p.height * p.width;
    const args = [this.ptr(op, "x", p.x, n), this.ptr(op, "out", p.out, 4 * n), p.planes, p.height, p.width];
    return this.run("upsampleNearest2x", args, 4 * n * NS_PER_ELEMENT);
  }

  transpose(p: TransposeArgs): void | Promise<void> {
    const op = "transpose";
    positive(op, { batch: p.batch, rows: p.rows, cols: p.cols });
    noAlias(op, p.out, { x: p.x });
    const n = p.batch * p.rows * p.cols;
    const args = [this.ptr(op, "x", p.x, n), this.ptr(op, "out", p.out, n), p.batch, p.rows, p.cols];
    return this.run("transpose", args, n * NS_PER_ELEMENT);
  }

  channelAffine(p: ChannelAffineArgs): void | Promise<void> {
    const op = "channelAffine";
    positive(op, { batch: p.batch, channels: p.channels, spatial: p.spatial });
    const planes = p.batch * p.channels;
    const n = planes * p.spatial;
    const code = activationCode(op, p.activation);
    noAlias(op, p.out, { scale: p.scale, shift: p.shift });
    const args = [
      this.ptr(op, "x", p.x, n),
      this.ptr(op, "scale", p.scale, planes),
      this.ptr(op, "shift", p.shift, planes),
      this.ptr(op, "out", p.out, n),
      planes, p.spatial, code,
    ];
    return this.run("channelAffine", args, n * (code === 0 || code === 4 ? NS_PER_ELEMENT : NS_PER_TRANSCENDENTAL));
  }

  copy(p: CopyArgs): void | Promise<void> {
    const op = "copy";
    nonNegative(op, {
      rows: p.rows, cols: p.cols, xOffset: p.xOffset, xRowStride: p.xRowStride, outOffset: p.outOffset,
      outRowStride: p.outRowStride,
    });
    noAlias(op, p.out, { x: p.x });
    if (p.rows === 0 || p.cols === 0) {
      this.own(p.x, "copy: x");
      this.own(p.out, "copy: out");
      return;
    }
    const x = this.ptr(op, "x", p.x, p.xOffset + (p.rows - 1) * p.xRowStride + p.cols);
    const out = this.ptr(op, "out", p.out, p.outOffset + (p.rows - 1) * p.outRowStride + p.cols);
    const args = [x + 4 * p.xOffset, out + 4 * p.outOffset, p.rows, p.cols, p.xRowStride, p.outRowStride];
    return this.run("copy2d", args, p.rows * p.cols * NS_PER_ELEMENT);
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

function positive(op: string, values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 1) throw new AutoencoderKLError(`wasm backend: ${op}`, `${k} must be a positive integer, got ${v}`);
  }
}

function nonNegative(op: string, values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 0) throw new AutoencoderKLError(`wasm backend: ${op}`, `${k} must be a non-negative integer, got ${v}`);
  }
}

function noAlias(op: string, out: DeviceBuffer, inputs: Record<string, DeviceBuffer | null | undefined>): void {
  for (const [k, v] of Object.entries(inputs)) {
    if (v === out) throw new AutoencoderKLError(`wasm backend: ${op}`, `out must not alias ${k}`);
  }
}

function activationCode(op: string, a: Activation): number {
  const code = ACTIVATION_CODE[a];
  if (code === undefined) throw new AutoencoderKLError(`wasm backend: ${op}`, `unknown activation ${JSON.stringify(a)}`);
  return code;
}

// ---- loading --------------------------------------------------------------------------------------------

const isNode = typeof process === "object" && process !== null && typeof process.versions?.node === "string";

function defaultUrl(relaxed: boolean): URL {
  // the same depth from src/backends/wasm/ and dist/backends/wasm/
  return relaxed
    ? new URL("../../../build/kernels-relaxed.wasm", import.meta.url)
    : new URL("../../../build/kernels-simd.wasm", import.meta.url);
}

async function loadBytes(relaxed: boolean, options: WasmBackendOptions): Promise<Uint8Array> {
  if (options.wasmBytes) {
    return options.wasmBytes instanceof Uint8Array ? options.wasmBytes : new Uint8Array(options.wasmBytes);
  }
  const url = options.wasmUrl !== undefined ? new URL(options.wasmUrl, import.meta.url) : defaultUrl(relaxed);
  try {
    if (isNode && url.protocol === "file:") {
      const spec = "node:fs/promises"; // held in a variable so browser bundlers leave it alone
      const fs = (await import(spec)) as typeof import("node:fs/promises");
      return new Uint8Array(await fs.readFile(url));
    }
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new AutoencoderKLError(
      String(url),
      `cannot load the WASM kernels (${e instanceof Error ? e.message : String(e)}); run \`npm run asbuild\` or pass wasmBytes/wasmUrl`,
      { cause: e },
    );
  }
}

/** A WebAssembly.Memory of `initial` pages with the largest maximum the engine grants (≤ 4 GiB). */
function makeMemory(initial: number, shared: boolean): { memory: WebAssembly.Memory; maxPages: number } | null {
  for (const maximum of [MAX_PAGES, 32768, 16384, 8192]) {
    if (maximum < initial) break;
    try {
      return { memory: new WebAssembly.Memory({ initial, maximum, shared }), maxPages: maximum };
    } catch {
      // a shared memory reserves its maximum up front; try a smaller one
    }
  }
  return null;
}

function canShareMemory(): boolean {
  return typeof SharedArrayBuffer === "function" && (typeof crossOriginIsolated === "undefined" || crossOriginIsolated);
}

/**
 * Creates the WASM backend. relaxed: "auto" (default) uses the relaxed-SIMD build when
 * `wasmRelaxedSimdSupported()`; true insists on it (error if the engine lacks it). threads: default 1.
 */
export async function createWasmBackend(options: WasmBackendOptions = {}): Promise<WasmKernels> {
  if (typeof WebAssembly !== "object" || !wasmSimdSupported()) {
    throw new AutoencoderKLError("wasm backend", "this JavaScript engine does not support WebAssembly SIMD");
  }
  const relaxedOpt = options.relaxed ?? "auto";
  const relaxedOk = wasmRelaxedSimdSupported();
  if (relaxedOpt === true && !relaxedOk && !options.wasmBytes) {
    throw new AutoencoderKLError(
      "wasm backend: relaxed",
      "relaxed SIMD is not supported by this engine (Node 20: run with --experimental-wasm-relaxed-simd)",
    );
  }
  const relaxed = relaxedOpt === "auto" ? relaxedOk : relaxedOpt;
  const wantThreads = options.threads ?? 1;
  if (!Number.isInteger(wantThreads) || wantThreads < 1) {
    throw new AutoencoderKLError("wasm backend: threads", `must be a positive integer, got ${wantThreads}`);
  }
  const mib = options.initialMemoryMiB ?? 16;
  if (!(mib > 0) || mib > 4096) {
    throw new AutoencoderKLError("wasm backend: initialMemoryMiB", `must be in (0, 4096], got ${mib}`);
  }
  const initial = Math.min(MAX_PAGES, Math.ceil((mib * 1024 * 1024) / PAGE));

  let bytes = await loadBytes(relaxed, options);
  // one shared memory when the platform has them (needed for threads, harmless for one), else unshared
  let made = options.sharedMemory !== false && canShareMemory() ? makeMemory(initial, true) : null;
  const shared = made !== null;
  if (!made) made = makeMemory(initial, false);
  if (!made) throw new AutoencoderKLError("wasm backend", `cannot create a WebAssembly memory of ${mib} MiB`);
  if (importsSharedMemory(bytes) !== shared) bytes = withSharedMemoryImport(bytes, shared);

  let module: WebAssembly.Module;
  let instance: WebAssembly.Instance;
  try {
    module = await WebAssembly.compile(bytes as BufferSource);
    instance = await WebAssembly.instantiate(module, {
      env: {
        memory: made.memory,
        abort: () => {
          throw new Error("wasm kernel abort");
        },
      },
    });
  } catch (e) {
    throw new AutoencoderKLError("wasm backend", `cannot instantiate the kernels: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }

  let pool: ThreadPool | null = null;
  let fallback: string | null = null;
  if (wantThreads > 1) {
    if (!shared) {
      fallback = options.sharedMemory === false
        ? "sharedMemory: false"
        : "no shared WebAssembly memory here (SharedArrayBuffer needs cross-origin isolation in browsers)";
    } else {
      try {
        pool = await ThreadPool.create(wantThreads, module, made.memory);
      } catch (e) {
        fallback = `worker threads failed to start: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }
  const k = new WasmKernels(made.memory, instance, pool, made.maxPages, fallback);
  if (options.parallelThresholdNs !== undefined) {
    if (!(options.parallelThresholdNs >= 0)) {
      throw new AutoencoderKLError("wasm backend: parallelThresholdNs", `must be a non-negative number, got ${options.parallelThresholdNs}`);
    }
    k.parallelThresholdNs = options.parallelThresholdNs;
  }
  if (options.winogradMinChannels !== undefined) {
    if (!(options.winogradMinChannels >= 1)) {
      throw new AutoencoderKLError("wasm backend: winogradMinChannels", `must be a number >= 1, got ${options.winogradMinChannels}`);
    }
    k.winogradMinChannels = options.winogradMinChannels;
  }
  return k;
}
