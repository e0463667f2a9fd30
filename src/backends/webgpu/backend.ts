/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import { type Op, validate } from "../../ops/op.js";
import { installOps, OPS, type OpMethods } from "../../ops/registry.js";
import type { Activation, DeviceBuffer, Kernels } from "../kernels.js";
import {
  BufferPool,
  GpuBuffer,
  halfToFloat,
  MAP_MODE_READ,
  type PoolKind,
  roundUp,
  sizeClass,
  USAGE_STORAGE,
} from "./buffers.js";
import type { WebGPULimits } from "./device.js";
import { PipelineCache } from "./pipelines.js";
import { type Constraint, chunks, foldGrid, planChunks } from "./plan.js";
import { Recorder } from "./recorder.js";
import type { Bind, WebGPURuntime } from "./runtime.js";
import { castKernel, type KernelDef, setHalfKernel } from "./shaders.js";

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

function nonNegInt(op: string, field: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new AutoencoderKLError(`webgpu ${op}`, `${field} must be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

// the op methods, installed below from the registry
export interface WebGPUKernels extends OpMethods {}

/**
 * The `Kernels` contract on WebGPU: the runtime the ops' WGSL plans (src/ops/) dispatch on. Buffers live on
 * the GPU, pooled by size class (buffers.ts); dispatches are recorded and submitted lazily (recorder.ts);
 * pipelines are compiled per kernel variant (pipelines.ts). A freed buffer that is reused later is only
 * touched by commands submitted after the ones that used it before (queue order).
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the op methods are declared by the interface of the same name, built from the op registry, and installed on the prototype
export class WebGPUKernels implements Kernels, WebGPURuntime {
  readonly name = "webgpu" as const;
  readonly description: string;
  readonly device: GPUDevice;
  /** Storage is f16 (arithmetic stays f32). */
  readonly f16: boolean;
  /** Effective limits: the device's, lowered by options.limits. */
  readonly limits: Readonly<WebGPULimits>;
  /** @internal WebGPURuntime: bytes per stored element. */
  readonly eb: 2 | 4;
  /** @internal WebGPURuntime */
  readonly maxGroups: number;

  private readonly ownsDevice: boolean;
  private readonly storageAlign: number;
  private readonly buffers: BufferPool;
  private readonly recorder: Recorder;
  private readonly pipelines: PipelineCache;
  private readonly dummy: GPUBuffer;
  private readonly dummyRW: GPUBuffer;
  private disposed = false;

  constructor(
    device: GPUDevice,
    info: { adapter?: string; ownsDevice: boolean; f16: boolean; limits?: Partial<WebGPULimits> },
  ) {
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
    this.maxGroups = Math.min(this.limits.maxComputeWorkgroupsPerDimension ** 3, 2 ** 31);
    if (this.limits.maxStorageBufferBindingSize < this.storageAlign + 64) {
      throw new AutoencoderKLError(
        "webgpu limits",
        `maxStorageBufferBindingSize ${this.limits.maxStorageBufferBindingSize} is too small (needs > ${this.storageAlign + 64})`,
      );
    }
    this.recorder = new Recorder(device, dl.minUniformBufferOffsetAlignment, () => this.buffers.destroyDeferred());
    this.buffers = new BufferPool((size, usage) =>
      this.recorder.scoped("out-of-memory", () => device.createBuffer({ size, usage })),
    );
    this.pipelines = new PipelineCache(device, this.f16, this.recorder);
    this.dummy = this.buffers.track(device.createBuffer({ size: 16, usage: USAGE_STORAGE }));
    this.dummyRW = this.buffers.track(device.createBuffer({ size: 16, usage: USAGE_STORAGE }));
    this.description = `webgpu (${info.adapter ?? "adapter"}; ${info.f16 ? "f16" : "f32"} storage, f32 arithmetic)`;
  }

  // ---- memory ---------------------------------------------------------------------------------------

  alloc(length: number): DeviceBuffer {
    nonNegInt("alloc", "length", length);
    // Fresh GPU buffers are zeroed; reused ones are cleared so alloc means the same on every backend.
    return this.allocRaw(length, this.eb, true);
  }

  free(buffer: DeviceBuffer): void {
    this.freeRaw(this.own("free", "buffer", buffer));
  }

  /**
   * f16 weights stay f16 on the GPU, 2 bytes per value: conv2d and linear read them through bindings that
   * unpack them (shaders.ts `half`), so weight memory halves as on wasm.
   */
  allocHalf(length: number): DeviceBuffer {
    nonNegInt("allocHalf", "length", length);
    const b = this.allocRaw(length, 2, true);
    b.dtype = "f16";
    return b;
  }

  writeHalf(buffer: DeviceBuffer, data: Uint16Array, offset = 0): void {
    const b = this.own("writeHalf", "buffer", buffer);
    if (b.dtype !== "f16") throw new AutoencoderKLError("webgpu writeHalf", "the buffer holds f32 values; use write");
    nonNegInt("writeHalf", "offset", offset);
    if (!(data instanceof Uint16Array)) throw new AutoencoderKLError("webgpu writeHalf", "data must be a Uint16Array");
    if (offset + data.length > b.length) {
      throw new AutoencoderKLError(
        "webgpu writeHalf",
        `writing ${data.length} elements at offset ${offset} overruns a buffer of ${b.length}`,
      );
    }
    if (data.length === 0) return;
    this.flush(); // queue.writeBuffer runs before anything still unsubmitted
    // writeBuffer moves whole 4-byte words: an odd first or last element goes through a one-word kernel
    let lo = 0,
      hi = data.length;
    if ((offset & 1) === 1) {
      this.setHalf(b, offset, data[0]);
      lo = 1;
    }
    if (hi > lo && ((offset + hi) & 1) === 1) {
      hi -= 1;
      this.setHalf(b, offset + hi, data[hi]);
    }
    if (hi > lo) {
      const words = new Uint16Array(data.subarray(lo, hi)); // a plain ArrayBuffer (data may be shared memory)
      this.device.queue.writeBuffer(b.gpu!, (offset + lo) * 2, words);
    }
  }

  private setHalf(b: GpuBuffer, e: number, bits: number): void {
    this.run(setHalfKernel(), [{ buf: b, lo: e, hi: e + 1 }], { e, bits }, 1);
  }

  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    const b = this.own("write", "buffer", buffer);
    if (b.dtype !== "f32") throw new AutoencoderKLError("webgpu write", "the buffer holds f16 values; use writeHalf");
    this.upload("write", b, data, offset);
  }

  private upload(call: string, b: GpuBuffer, data: Float32Array, offset: number): void {
    nonNegInt(call, "offset", offset);
    if (!(data instanceof Float32Array)) throw new AutoencoderKLError(`webgpu ${call}`, "data must be a Float32Array");
    if (offset + data.length > b.length) {
      throw new AutoencoderKLError(
        `webgpu ${call}`,
        `writing ${data.length} elements at offset ${offset} overruns a buffer of ${b.length}`,
      );
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
      this.run(
        castKernel(),
        [
          { buf: tmp, lo: start, hi: start + count },
          { buf: b, lo: offset + start, hi: offset + start + count },
        ],
        { start: offset + start, count, src0: start },
        cdiv(count, 256),
      );
    });
    this.freeRaw(tmp);
  }

  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const b = this.own("read", "buffer", buffer);
    const n = length === undefined ? b.length : nonNegInt("read", "length", length);
    if (n > b.length)
      throw new AutoencoderKLError("webgpu read", `length ${n} exceeds the buffer's ${b.length} elements`);
    if (n === 0) {
      this.flush();
      await this.recorder.checkErrors();
      return new Float32Array(0);
    }
    const bytes = roundUp(n * b.eb, 4);
    const cls = sizeClass(bytes);
    const { g: staging } = this.buffers.take("staging", cls);
    this.recorder.commands().copyBufferToBuffer(b.gpu!, 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(MAP_MODE_READ, 0, bytes);
    } catch (e) {
      await this.recorder.checkErrors();
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
    this.release("staging", staging, cls);
    await this.recorder.checkErrors();
    return out;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    this.recorder.flush();
  }

  /** Flushes and waits until the GPU has finished all submitted work (for timing). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.recorder.checkErrors();
  }

  dispose(): void {
    if (this.disposed) return;
    this.flush();
    this.disposed = true;
    this.recorder.close();
    this.buffers.destroyAll();
    this.pipelines.clear();
    if (this.ownsDevice) this.device.destroy();
  }

  /**
   * Compiles the pipelines a VAE forward pass uses (each op's warm-up list: no-alias variants plus the
   * in-place ones) with createComputePipelineAsync, so the first encode/decode does not stall on compilation.
   */
  async warmup(activations: readonly Activation[] = ["silu"]): Promise<void> {
    const plain = (d: KernelDef): number[] => d.bindings.map((_, i) => i);
    const variants: [KernelDef, number[]][] = [];
    for (const op of Object.values(OPS) as Op<unknown>[]) {
      for (const w of op.warmup?.(activations) ?? []) variants.push([w.def, w.roots ?? plain(w.def)]);
    }
    if (this.f16) variants.push([castKernel(), plain(castKernel())]);
    await this.pipelines.warmup(variants);
  }

  /** Dispatches recorded since creation (tests use it to see ops split under lowered limits). */
  get dispatchCount(): number {
    return this.recorder.totalDispatches;
  }

  // ---- the runtime the ops dispatch on (WebGPURuntime) ------------------------------------------------

  /** @internal Splits a flat elementwise range so every binding and the grid fit, then calls `body` per chunk. */
  elementwise(
    op: string,
    length: number,
    ebs: readonly number[],
    body: (start: number, count: number) => void,
    extra: Constraint[] = [],
  ): void {
    if (length === 0) return;
    const [size] = planChunks(
      op,
      [length],
      [
        { what: "elements", size: (s) => s[0], limit: Math.min(...ebs.map((e) => this.cap(e))) },
        { what: "workgroups", size: (s) => cdiv(s[0], 256), limit: this.maxGroups },
        ...extra,
      ],
    );
    for (const {
      start: [s0],
      count: [c],
    } of chunks([length], [size]))
      body(s0, c);
  }

  /** @internal Largest element span one binding may cover once its offset is aligned down. */
  cap(eb: number): number {
    return Math.floor((this.limits.maxStorageBufferBindingSize - this.storageAlign - 4) / eb);
  }

  /** @internal */
  own(op: string, field: string, b: DeviceBuffer): GpuBuffer {
    if (this.disposed) throw new AutoencoderKLError(`webgpu ${op}`, "the backend was disposed");
    if (!(b instanceof GpuBuffer) || b.owner !== this)
      throw new AutoencoderKLError(`webgpu ${op}`, `${field} was not allocated by this backend`);
    if (!b.gpu) throw new AutoencoderKLError(`webgpu ${op}`, `${field} was already freed`);
    return b;
  }

  /** @internal A buffer of `length` elements of `eb` bytes; `zero` clears a reused one. */
  allocRaw(length: number, eb: 2 | 4, zero = false): GpuBuffer {
    if (this.disposed) throw new AutoencoderKLError("webgpu alloc", "the backend was disposed");
    const bytes = Math.max(16, roundUp(length * eb, 16));
    if (bytes > this.limits.maxBufferSize) {
      throw new AutoencoderKLError(
        "webgpu alloc",
        `${length} elements (${bytes} bytes) exceed the device's maxBufferSize of ${this.limits.maxBufferSize} bytes`,
      );
    }
    let cls = sizeClass(bytes);
    if (cls > this.limits.maxBufferSize) cls = bytes;
    const { g, reused } = this.buffers.take("storage", cls);
    if (reused && zero) this.recorder.commands().clearBuffer(g, 0, cls);
    return new GpuBuffer(length, g, cls, eb, this);
  }

  /** @internal */
  freeRaw(b: GpuBuffer): void {
    this.release("storage", b.gpu!, b.size);
    b.gpu = null;
  }

  /**
   * @internal Records one dispatch. Bindings that share a written buffer are merged into one binding
   * (WebGPU rejects a writable binding overlapping another binding of the same buffer) over the union of
   * their ranges; each range is bound from its start aligned down to minStorageBufferOffsetAlignment, and
   * the kernel subtracts that base from its global indices.
   */
  run(def: KernelDef, binds: (Bind | null)[], params: Record<string, number>, groups: number): void {
    if (groups <= 0) return;
    const n = def.bindings.length;
    const roots = def.bindings.map((_, i) => i);
    const writable = def.bindings.map((b) => !!b.write);
    for (let i = 0; i < n; i++) {
      const b = binds[i];
      if (b && (b.lo < 0 || b.hi > b.buf.length || b.hi <= b.lo)) {
        throw new AutoencoderKLError(
          `webgpu ${def.name}`,
          `${def.bindings[i].name} has ${b.buf.length} elements but the op needs elements [${b.lo}, ${b.hi})`,
        );
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
    const { pipeline, layout } = this.pipelines.get(def, roots, writable);

    const structBytes = roundUp((n + def.params.length) * 4, 16);
    const uOff = this.recorder.uniformSlot(structBytes);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.recorder.uniformBuffer, offset: uOff, size: structBytes } },
    ];
    const bases = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) {
      if (roots[i] !== i) continue;
      const b = binds[i];
      if (!b) {
        entries.push({
          binding: i + 1,
          resource: { buffer: writable[i] ? this.dummyRW : this.dummy, offset: 0, size: 16 },
        });
        continue;
      }
      const eb = b.buf.eb;
      const offset = Math.floor((b.lo * eb) / this.storageAlign) * this.storageAlign;
      const size = roundUp(b.hi * eb - offset, 4);
      if (size > this.limits.maxStorageBufferBindingSize) {
        throw new AutoencoderKLError(
          `webgpu ${def.name}`,
          `internal: binding ${def.bindings[i].name} of ${size} bytes exceeds maxStorageBufferBindingSize`,
        );
      }
      bases[i] = offset / eb;
      entries.push({ binding: i + 1, resource: { buffer: b.buf.gpu!, offset, size } });
    }
    const view = this.recorder.uniformView;
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
    const pass = this.recorder.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    const [gx, gy, gz] = foldGrid(groups, this.limits.maxComputeWorkgroupsPerDimension);
    pass.dispatchWorkgroups(gx, gy, gz);
    this.recorder.dispatched();
  }

  private release(kind: PoolKind, g: GPUBuffer, cls: number): void {
    if (this.disposed) return;
    this.buffers.release(kind, g, cls, this.recorder.recording);
  }
}

installOps(
  WebGPUKernels.prototype,
  (op: Op<unknown>) =>
    function (this: WebGPUKernels, args: unknown): void {
      validate("webgpu", op, args);
      op.webgpu(this, args);
    },
);
