/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import { validate, type Op } from "../../ops/op.js";
import { installOps, OPS, type OpMethods } from "../../ops/registry.js";
import type { Activation, DeviceBuffer, Kernels } from "../kernels.js";
import { getWebGPU } from "./gpu.js";
import { chunks, foldGrid, planChunks, type Constraint } from "./plan.js";
import type { Bind, WebGPURuntime } from "./runtime.js";
import { buildShader, castKernel, type KernelDef } from "./shaders.js";

// Numeric flag values from the WebGPU spec, so nothing depends on GPUBufferUsage & co. being global.
const USAGE_MAP_READ = 0x1;
const USAGE_COPY_SRC = 0x4;
const USAGE_COPY_DST = 0x8;
const USAGE_UNIFORM = 0x40;
const USAGE_STORAGE = 0x80;
const STAGE_COMPUTE = 0x4;
const MAP_MODE_READ = 0x1;

/** The device limits the backend plans against; tests lower them to force chunked dispatches. */
export interface WebGPULimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

export interface WebGPUBackendOptions {
  /** Use this device (the caller owns it: dispose() does not destroy it). */
  device?: GPUDevice;
  /** Request the device from this adapter instead of the default one. */
  adapter?: GPUAdapter;
  /** Lower (never raise) the limits the backend plans against. */
  limits?: Partial<WebGPULimits>;
  /** f16 storage with f32 arithmetic when the device has `shader-f16`; ignored otherwise. */
  f16?: boolean;
}

/** Dispatches between automatic submits: lets the GPU start while JS keeps encoding. */
const SUBMIT_EVERY = 64;
const UNIFORM_RING_BYTES = 64 * 1024;
/** Pooled-but-free bytes kept before freed buffers are destroyed instead. */
const POOL_BUDGET_BYTES = 1 << 30;

export class GpuBuffer implements DeviceBuffer {
  constructor(
    readonly length: number,
    public gpu: GPUBuffer | null,
    /** Bytes of the underlying GPUBuffer (its size class). */
    readonly size: number,
    /** Bytes per element: 4, or 2 with f16 storage. */
    readonly eb: 2 | 4,
    readonly owner: WebGPUKernels,
  ) {}
}

interface Pipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/** Smallest size class >= bytes: 256 B minimum, then 8 steps per power of two (<= 12.5% waste). */
function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

const roundUp = (v: number, a: number): number => Math.ceil(v / a) * a;
const cdiv = (a: number, b: number): number => Math.ceil(a / b);

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

async function firstError(checks: Promise<GPUError | null>[]): Promise<GPUError | null> {
  for (const r of await Promise.allSettled(checks)) {
    if (r.status === "fulfilled" && r.value) return r.value;
    if (r.status === "rejected") return { message: String((r.reason as Error)?.message ?? r.reason) } as GPUError;
  }
  return null;
}

function nonNegInt(op: string, field: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new AutoencoderKLError(`webgpu ${op}`, `${field} must be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

/**
 * The `Kernels` contract in WGSL. Buffers live on the GPU and are pooled by size class; ops are recorded
 * into one command encoder (one compute pass) and submitted lazily: on read, on write, every
 * SUBMIT_EVERY dispatches, or when the uniform ring fills. Queue order makes this safe: a freed buffer that
 * is reused later is only touched by commands submitted after the ones that used it before.
 */
// the op methods, installed below from the registry
export interface WebGPUKernels extends OpMethods {}

export class WebGPUKernels implements Kernels, WebGPURuntime {
  readonly name = "webgpu" as const;
  readonly description: string;
  readonly device: GPUDevice;
  /** Storage is f16 (arithmetic stays f32). */
  readonly f16: boolean;
  /** Effective limits: the device's, lowered by options.limits. */
  readonly limits: Readonly<WebGPULimits>;

  private readonly ownsDevice: boolean;
  /** @internal WebGPURuntime: bytes per stored element. */
  readonly eb: 2 | 4;
  private readonly storageAlign: number;
  private readonly uniformAlign: number;
  /** @internal WebGPURuntime */
  readonly maxGroups: number;
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly readPool = new Map<number, GPUBuffer[]>();
  private readonly allBuffers = new Set<GPUBuffer>();
  private pooledBytes = 0;
  private deferredDestroy: GPUBuffer[] = [];
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private totalDispatches = 0;
  private readonly uniformBuffer: GPUBuffer;
  private readonly uniformStage = new Uint8Array(UNIFORM_RING_BYTES);
  private readonly uniformView = new DataView(this.uniformStage.buffer);
  private uniformUsed = 0;
  private readonly dummy: GPUBuffer;
  private readonly dummyRW: GPUBuffer;
  private errorChecks: Promise<GPUError | null>[] = [];
  private firstError: string | null = null;
  private disposed = false;

  constructor(device: GPUDevice, info: { adapter?: string; ownsDevice: boolean; f16: boolean; limits?: Partial<WebGPULimits> }) {
    this.device = device;
    this.ownsDevice = info.ownsDevice;
    this.f16 = info.f16;
    this.eb = info.f16 ? 2 : 4;
    const dl = device.limits;
    const lower = (k: keyof WebGPULimits): number => {
      const v = info.limits?.[k];
      return v !== undefined && v > 0 ? Math.min(dl[k], Math.floor(v)) : dl[k];
    };
    this.limits = Object.freeze({
      maxStorageBufferBindingSize: lower("maxStorageBufferBindingSize"),
      maxBufferSize: lower("maxBufferSize"),
      maxComputeWorkgroupsPerDimension: lower("maxComputeWorkgroupsPerDimension"),
    });
    this.storageAlign = dl.minStorageBufferOffsetAlignment;
    this.uniformAlign = dl.minUniformBufferOffsetAlignment;
    this.maxGroups = Math.min(this.limits.maxComputeWorkgroupsPerDimension ** 3, 2 ** 31);
    if (this.limits.maxStorageBufferBindingSize < this.storageAlign + 64) {
      throw new AutoencoderKLError("webgpu limits", `maxStorageBufferBindingSize ${this.limits.maxStorageBufferBindingSize} is too small (needs > ${this.storageAlign + 64})`);
    }
    this.uniformBuffer = this.track(device.createBuffer({ size: UNIFORM_RING_BYTES, usage: USAGE_UNIFORM | USAGE_COPY_DST }));
    this.dummy = this.track(device.createBuffer({ size: 16, usage: USAGE_STORAGE }));
    this.dummyRW = this.track(device.createBuffer({ size: 16, usage: USAGE_STORAGE }));
    const onError = (ev: GPUUncapturedErrorEvent): void => {
      this.firstError ??= ev.error.message;
    };
    if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", onError);
    else device.onuncapturederror = onError;
    void device.lost.then((l) => {
      if (!this.disposed) this.firstError ??= `device lost (${l.reason}): ${l.message}`;
    });
    this.description = `webgpu (${info.adapter ?? "adapter"}; ${info.f16 ? "f16" : "f32"} storage, f32 arithmetic)`;
  }

  // ---- memory ---------------------------------------------------------------------------------------

  alloc(length: number): DeviceBuffer {
    nonNegInt("alloc", "length", length);
    // Fresh GPU buffers are zeroed; reused ones are cleared so alloc means the same on every backend.
    return this.allocRaw(length, this.eb, true);
  }

  free(buffer: DeviceBuffer): void {
    const b = this.own("free", "buffer", buffer);
    this.release(b.gpu!, b.size, this.pool);
    b.gpu = null;
  }

  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    const b = this.own("write", "buffer", buffer);
    nonNegInt("write", "offset", offset);
    if (!(data instanceof Float32Array)) throw new AutoencoderKLError("webgpu write", "data must be a Float32Array");
    if (offset + data.length > b.length) {
      throw new AutoencoderKLError("webgpu write", `writing ${data.length} elements at offset ${offset} overruns a buffer of ${b.length}`);
    }
    if (data.length === 0) return;
    // queue.writeBuffer runs before anything still unsubmitted: submit first so earlier ops see old data.
    this.flush();
    // writeBuffer takes views of plain ArrayBuffers only (the data may live in shared wasm memory).
    const src = data.buffer instanceof ArrayBuffer ? (data as Float32Array<ArrayBuffer>) : new Float32Array(data);
    if (b.eb === 4) {
      this.device.queue.writeBuffer(b.gpu!, offset * 4, src);
      return;
    }
    // f16: upload f32 and convert on the GPU (also handles offsets that are not 4-byte aligned).
    const tmp = this.allocRaw(data.length, 4);
    this.device.queue.writeBuffer(tmp.gpu!, 0, src);
    this.elementwise("write", data.length, [4, b.eb], (start, count) => {
      this.run(castKernel(), [{ buf: tmp, lo: start, hi: start + count }, { buf: b, lo: offset + start, hi: offset + start + count }],
        { start: offset + start, count, src0: start }, cdiv(count, 256));
    });
    this.freeRaw(tmp);
  }

  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const b = this.own("read", "buffer", buffer);
    const n = length === undefined ? b.length : nonNegInt("read", "length", length);
    if (n > b.length) throw new AutoencoderKLError("webgpu read", `length ${n} exceeds the buffer's ${b.length} elements`);
    if (n === 0) {
      this.flush();
      await this.checkErrors();
      return new Float32Array(0);
    }
    const bytes = roundUp(n * b.eb, 4);
    const cls = sizeClass(bytes);
    const staging = this.readPool.get(cls)?.pop() ?? this.track(this.device.createBuffer({ size: cls, usage: USAGE_MAP_READ | USAGE_COPY_DST }));
    this.endPass();
    this.enc().copyBufferToBuffer(b.gpu!, 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(MAP_MODE_READ, 0, bytes);
    } catch (e) {
      await this.checkErrors();
      throw new AutoencoderKLError("webgpu read", `mapping the result failed: ${(e as Error).message}`, { cause: e });
    }
    const raw = staging.getMappedRange(0, bytes);
    let out: Float32Array;
    if (b.eb === 4) {
      out = new Float32Array(raw.slice(0, n * 4));
    } else {
      const h = new Uint16Array(raw, 0, n);
      out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]);
    }
    staging.unmap();
    this.release(staging, cls, this.readPool);
    await this.checkErrors();
    return out;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const dev = this.device;
    dev.pushErrorScope("out-of-memory");
    dev.pushErrorScope("validation");
    const cb = this.encoder.finish();
    this.encoder = null;
    if (this.uniformUsed > 0) dev.queue.writeBuffer(this.uniformBuffer, 0, this.uniformStage, 0, this.uniformUsed);
    dev.queue.submit([cb]);
    this.errorChecks.push(dev.popErrorScope(), dev.popErrorScope());
    // Long runs without a read: fold the pending checks into one so the list stays short.
    if (this.errorChecks.length > 256) this.errorChecks = [firstError(this.errorChecks)];
    this.uniformUsed = 0;
    this.dispatches = 0;
    for (const g of this.deferredDestroy) this.destroy(g);
    this.deferredDestroy = [];
  }

  /** Flushes and waits until the GPU has finished all submitted work (for timing). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  dispose(): void {
    if (this.disposed) return;
    this.flush();
    this.disposed = true;
    for (const g of this.allBuffers) g.destroy();
    this.allBuffers.clear();
    this.pool.clear();
    this.readPool.clear();
    this.pipelines.clear();
    if (this.ownsDevice) this.device.destroy();
  }

  // ---- internals ------------------------------------------------------------------------------------

  /** Splits a flat elementwise range so every binding and the grid fit, then calls `body` per chunk. */
  /** @internal WebGPURuntime */
  elementwise(op: string, length: number, ebs: readonly number[], body: (start: number, count: number) => void, extra: Constraint[] = []): void {
    if (length === 0) return;
    const [size] = planChunks(op, [length], [
      { what: "elements", size: (s) => s[0], limit: Math.min(...ebs.map((e) => this.cap(e))) },
      { what: "workgroups", size: (s) => cdiv(s[0], 256), limit: this.maxGroups },
      ...extra,
    ]);
    for (const { start: [s0], count: [c] } of chunks([length], [size])) body(s0, c);
  }

  /** Largest element span one binding may cover once its offset is aligned down. */
  /** @internal WebGPURuntime */
  cap(eb: number): number {
    return Math.floor((this.limits.maxStorageBufferBindingSize - this.storageAlign - 4) / eb);
  }

  /** @internal WebGPURuntime */
  own(op: string, field: string, b: DeviceBuffer): GpuBuffer {
    if (this.disposed) throw new AutoencoderKLError(`webgpu ${op}`, "the backend was disposed");
    if (!(b instanceof GpuBuffer) || b.owner !== this) throw new AutoencoderKLError(`webgpu ${op}`, `${field} was not allocated by this backend`);
    if (!b.gpu) throw new AutoencoderKLError(`webgpu ${op}`, `${field} was already freed`);
    return b;
  }

  private track(g: GPUBuffer): GPUBuffer {
    this.allBuffers.add(g);
    return g;
  }

  private destroy(g: GPUBuffer): void {
    this.allBuffers.delete(g);
    g.destroy();
  }

  /** @internal WebGPURuntime */
  allocRaw(length: number, eb: 2 | 4, zero = false): GpuBuffer {
    if (this.disposed) throw new AutoencoderKLError("webgpu alloc", "the backend was disposed");
    const bytes = Math.max(16, roundUp(length * eb, 16));
    if (bytes > this.limits.maxBufferSize) {
      throw new AutoencoderKLError("webgpu alloc", `${length} elements (${bytes} bytes) exceed the device's maxBufferSize of ${this.limits.maxBufferSize} bytes`);
    }
    let cls = sizeClass(bytes);
    if (cls > this.limits.maxBufferSize) cls = bytes;
    const list = this.pool.get(cls);
    let g = list?.pop();
    if (g) {
      this.pooledBytes -= cls;
      if (zero) {
        this.endPass();
        this.enc().clearBuffer(g, 0, cls);
      }
    } else {
      this.device.pushErrorScope("out-of-memory");
      g = this.track(this.device.createBuffer({ size: cls, usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST }));
      this.errorChecks.push(this.device.popErrorScope());
    }
    return new GpuBuffer(length, g, cls, eb, this);
  }

  /** @internal WebGPURuntime */
  freeRaw(b: GpuBuffer): void {
    this.release(b.gpu!, b.size, this.pool);
    b.gpu = null;
  }

  private release(g: GPUBuffer, cls: number, pool: Map<number, GPUBuffer[]>): void {
    if (this.disposed) return;
    if (this.pooledBytes + cls > POOL_BUDGET_BYTES) {
      // Recorded-but-unsubmitted commands may still use it: destroy only after they are submitted.
      if (this.encoder) this.deferredDestroy.push(g);
      else this.destroy(g);
      return;
    }
    this.pooledBytes += cls;
    let list = pool.get(cls);
    if (!list) pool.set(cls, (list = []));
    list.push(g);
  }

  private enc(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private pipelineKey(def: KernelDef, roots: readonly number[]): string {
    return `${def.name}|${roots.join(",")}|${this.f16 ? "h" : "f"}`;
  }

  private pipelineParts(def: KernelDef, roots: readonly number[], writable: readonly boolean[]): { layout: GPUBindGroupLayout; desc: GPUComputePipelineDescriptor } {
    const dev = this.device;
    const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: STAGE_COMPUTE, buffer: { type: "uniform" } }];
    roots.forEach((r, i) => {
      if (r === i) entries.push({ binding: i + 1, visibility: STAGE_COMPUTE, buffer: { type: writable[i] ? "storage" : "read-only-storage" } });
    });
    const layout = dev.createBindGroupLayout({ entries });
    const module = dev.createShaderModule({ code: buildShader(def, roots, writable, this.f16), label: def.name });
    return { layout, desc: { layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" }, label: def.name } };
  }

  private pipeline(def: KernelDef, roots: number[], writable: boolean[]): Pipeline {
    const key = this.pipelineKey(def, roots);
    let p = this.pipelines.get(key);
    if (p) return p;
    const dev = this.device;
    dev.pushErrorScope("validation");
    const { layout, desc } = this.pipelineParts(def, roots, writable);
    p = { pipeline: dev.createComputePipeline(desc), layout };
    this.errorChecks.push(dev.popErrorScope());
    this.pipelines.set(key, p);
    return p;
  }

  /**
   * Compiles the pipelines a VAE forward pass uses (no-alias variants, plus in-place group norm and add)
   * with createComputePipelineAsync, so the first encode/decode does not stall on shader compilation.
   */
  async warmup(activations: readonly Activation[] = ["silu"]): Promise<void> {
    const plain = (d: KernelDef): number[] => d.bindings.map((_, i) => i);
    const defs: [KernelDef, number[]][] = [];
    for (const op of Object.values(OPS) as Op<unknown>[]) {
      for (const w of op.warmup?.(activations) ?? []) defs.push([w.def, w.roots ?? plain(w.def)]);
    }
    if (this.f16) defs.push([castKernel(), plain(castKernel())]);
    const dev = this.device;
    await Promise.all(defs.map(async ([d, roots]) => {
      const key = this.pipelineKey(d, roots);
      if (this.pipelines.has(key)) return;
      const writable = d.bindings.map((b, i) => !!b.write || roots.some((r, j) => r === roots[i] && (d.bindings[j].write ?? false)));
      const { layout, desc } = this.pipelineParts(d, roots, writable);
      try {
        const pipeline = await dev.createComputePipelineAsync(desc);
        this.pipelines.set(key, { pipeline, layout });
      } catch (e) {
        throw new AutoencoderKLError("webgpu warmup", `compiling ${d.name} failed: ${(e as Error).message}`, { cause: e });
      }
    }));
  }

  /** Dispatches recorded since creation (tests use it to see ops split under lowered limits). */
  get dispatchCount(): number {
    return this.totalDispatches;
  }

  /**
   * Records one dispatch. Bindings that share a written buffer are merged into one binding (WebGPU
   * rejects a writable binding overlapping another binding of the same buffer) over the union of their
   * ranges; each range is bound from its start aligned down to minStorageBufferOffsetAlignment, and the
   * kernel subtracts that base from its global indices.
   */
  /** @internal WebGPURuntime */
  run(def: KernelDef, binds: (Bind | null)[], params: Record<string, number>, groups: number): void {
    if (groups <= 0) return;
    const n = def.bindings.length;
    const roots = def.bindings.map((_, i) => i);
    const writable = def.bindings.map((b) => !!b.write);
    for (let i = 0; i < n; i++) {
      const b = binds[i];
      if (b && (b.lo < 0 || b.hi > b.buf.length || b.hi <= b.lo)) {
        throw new AutoencoderKLError(`webgpu ${def.name}`, `${def.bindings[i].name} has ${b.buf.length} elements but the op needs elements [${b.lo}, ${b.hi})`);
      }
    }
    for (let i = 0; i < n; i++) {
      const b = binds[i];
      if (!b || roots[i] !== i) continue;
      const same: number[] = [];
      for (let j = i + 1; j < n; j++) if (binds[j]?.buf.gpu === b.buf.gpu) same.push(j);
      if (same.length === 0 || !(writable[i] || same.some((j) => writable[j]))) continue;
      writable[i] = true;
      for (const j of same) {
        roots[j] = i;
        writable[j] = true;
        b.lo = Math.min(b.lo, binds[j]!.lo);
        b.hi = Math.max(b.hi, binds[j]!.hi);
      }
    }
    const { pipeline, layout } = this.pipeline(def, roots, writable);

    const fields = n + def.params.length;
    const structBytes = roundUp(fields * 4, 16);
    const slot = roundUp(structBytes, this.uniformAlign);
    if (this.uniformUsed + slot > UNIFORM_RING_BYTES) this.flush();
    const uOff = this.uniformUsed;
    this.uniformUsed += slot;

    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.uniformBuffer, offset: uOff, size: structBytes } }];
    const bases = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) {
      if (roots[i] !== i) continue;
      const b = binds[i];
      if (!b) {
        entries.push({ binding: i + 1, resource: { buffer: writable[i] ? this.dummyRW : this.dummy, offset: 0, size: 16 } });
        continue;
      }
      const eb = b.buf.eb;
      const offset = Math.floor((b.lo * eb) / this.storageAlign) * this.storageAlign;
      const size = roundUp(b.hi * eb - offset, 4);
      if (size > this.limits.maxStorageBufferBindingSize) {
        throw new AutoencoderKLError(`webgpu ${def.name}`, `internal: binding ${def.bindings[i].name} of ${size} bytes exceeds maxStorageBufferBindingSize`);
      }
      bases[i] = offset / eb;
      entries.push({ binding: i + 1, resource: { buffer: b.buf.gpu!, offset, size } });
    }
    const view = this.uniformView;
    for (let i = 0; i < n; i++) view.setUint32(uOff + 4 * i, bases[roots[i]], true);
    def.params.forEach(([name, type], j) => {
      const v = params[name];
      if (v === undefined) throw new Error(`webgpu ${def.name}: missing parameter ${name}`);
      const at = uOff + 4 * (n + j);
      if (type === "f32") view.setFloat32(at, v, true);
      else if (type === "i32") view.setInt32(at, v, true);
      else view.setUint32(at, v, true);
    });

    const bindGroup = this.device.createBindGroup({ layout, entries });
    this.pass ??= this.enc().beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    const [gx, gy, gz] = foldGrid(groups, this.limits.maxComputeWorkgroupsPerDimension);
    this.pass.dispatchWorkgroups(gx, gy, gz);
    this.totalDispatches++;
    if (++this.dispatches >= SUBMIT_EVERY) this.flush();
  }

  private async checkErrors(): Promise<void> {
    const checks = this.errorChecks;
    this.errorChecks = [];
    const e = await firstError(checks);
    if (e) this.firstError ??= e.message;
    if (this.firstError) {
      const msg = this.firstError;
      this.firstError = null;
      throw new AutoencoderKLError("webgpu", msg);
    }
  }
}

installOps(WebGPUKernels.prototype, (op: Op<unknown>) =>
  function (this: WebGPUKernels, args: unknown): void {
    validate("webgpu", op, args);
    op.webgpu(this, args);
  },
);

/**
 * Creates the WebGPU backend. Without `device`, takes the adapter (or finds one through getWebGPU) and
 * requests a device with the adapter's largest buffer, binding and dispatch limits, plus `shader-f16` when
 * `f16` is asked for and available.
 */
export async function createWebGPUBackend(options: WebGPUBackendOptions = {}): Promise<WebGPUKernels> {
  let device = options.device;
  let adapter = options.adapter ?? null;
  let owns = false;
  if (!device) {
    if (!adapter) {
      const gpu = await getWebGPU();
      if (!gpu) {
        throw new AutoencoderKLError('backend "webgpu"', "no WebGPU implementation: navigator.gpu is missing and the optional 'webgpu' package (Dawn for Node) could not be loaded");
      }
      adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
      if (!adapter) {
        throw new AutoencoderKLError('backend "webgpu"', "no GPU adapter available (requestAdapter returned null); without a GPU on Linux, a Vulkan driver such as SwiftShader with VK_ICD_FILENAMES set provides one");
      }
    }
    const wantF16 = options.f16 === true && adapter.features.has("shader-f16");
    const L = adapter.limits;
    try {
      device = await adapter.requestDevice({
        requiredFeatures: wantF16 ? ["shader-f16"] : [],
        requiredLimits: {
          maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
          maxBufferSize: L.maxBufferSize,
          maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
        },
      });
    } catch (e) {
      throw new AutoencoderKLError('backend "webgpu"', `requestDevice failed: ${(e as Error).message}`, { cause: e });
    }
    owns = true;
  }
  const f16 = options.f16 === true && device.features.has("shader-f16");
  const info = (adapter as { info?: GPUAdapterInfo } | null)?.info;
  const name = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") : undefined;
  return new WebGPUKernels(device, { adapter: name || undefined, ownsDevice: owns, f16, limits: options.limits });
}
