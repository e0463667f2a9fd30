/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import type {
  Activation, ActivationArgs, AddArgs, AttentionArgs, ChannelAffineArgs, Conv2dArgs, CopyArgs, DeviceBuffer, GroupNormArgs, Kernels, LinearArgs,
  MatmulArgs, SoftmaxArgs, TransposeArgs, Upsample2xArgs,
} from "../kernels.js";
import { getWebGPU } from "./gpu.js";
import { chunks, foldGrid, planChunks, type Constraint } from "./plan.js";
import {
  activationKernel, addKernel, attentionKernel, buildShader, castKernel, channelAffineKernel, convKernel, copyKernel, gemmKernel,
  groupNormApplyKernel, groupNormFinalKernel, groupNormStatsKernel, softmaxKernel, transposeKernel, upsampleKernel,
  type KernelDef,
} from "./shaders.js";

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
/** Group-norm reduction slice per workgroup. */
const GN_SLICE = 4096;

class GpuBuffer implements DeviceBuffer {
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

interface Bind {
  buf: GpuBuffer;
  /** Element range [lo, hi) the dispatch touches. */
  lo: number;
  hi: number;
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
export class WebGPUKernels implements Kernels {
  readonly name = "webgpu" as const;
  readonly description: string;
  readonly device: GPUDevice;
  /** Storage is f16 (arithmetic stays f32). */
  readonly f16: boolean;
  /** Effective limits: the device's, lowered by options.limits. */
  readonly limits: Readonly<WebGPULimits>;

  private readonly ownsDevice: boolean;
  private readonly eb: 2 | 4;
  private readonly storageAlign: number;
  private readonly uniformAlign: number;
  private readonly maxGroups: number;
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

  // ---- ops ------------------------------------------------------------------------------------------

  add(p: AddArgs): void {
    const n = nonNegInt("add", "length", p.length);
    const a = this.own("add", "a", p.a), b = this.own("add", "b", p.b), out = this.own("add", "out", p.out);
    this.elementwise("add", n, [a.eb, b.eb, out.eb], (start, count) => {
      const r = { lo: start, hi: start + count };
      this.run(addKernel(), [{ buf: a, ...r }, { buf: b, ...r }, { buf: out, ...r }], { start, count }, cdiv(count, 256));
    });
  }

  activation(p: ActivationArgs): void {
    const n = nonNegInt("activation", "length", p.length);
    const x = this.own("activation", "x", p.x), out = this.own("activation", "out", p.out);
    const k = activationKernel(this.checkActivation("activation", p.activation));
    this.elementwise("activation", n, [x.eb, out.eb], (start, count) => {
      const r = { lo: start, hi: start + count };
      this.run(k, [{ buf: x, ...r }, { buf: out, ...r }], { start, count }, cdiv(count, 256));
    });
  }

  channelAffine(p: ChannelAffineArgs): void {
    const op = "channelAffine";
    const planes = nonNegInt(op, "batch", p.batch) * nonNegInt(op, "channels", p.channels);
    const S = nonNegInt(op, "spatial", p.spatial);
    const k = channelAffineKernel(this.checkActivation(op, p.activation));
    const x = this.own(op, "x", p.x), scale = this.own(op, "scale", p.scale), shift = this.own(op, "shift", p.shift);
    const out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["scale", scale], ["shift", shift]]);
    this.elementwise(op, planes * S, [x.eb, out.eb], (start, count) => {
      const r = { lo: start, hi: start + count };
      const pr = { lo: Math.floor(start / S), hi: Math.floor((start + count - 1) / S) + 1 };
      this.run(k, [{ buf: x, ...r }, { buf: scale, ...pr }, { buf: shift, ...pr }, { buf: out, ...r }], { start, count, spatial: S }, cdiv(count, 256));
    }, [{ what: "scale/shift", size: (s) => cdiv(s[0], S) + 1, limit: this.cap(scale.eb) }]);
  }

  copy(p: CopyArgs): void {
    const op = "copy";
    const rows = nonNegInt(op, "rows", p.rows), cols = nonNegInt(op, "cols", p.cols);
    const xOff = nonNegInt(op, "xOffset", p.xOffset), xs = nonNegInt(op, "xRowStride", p.xRowStride);
    const oOff = nonNegInt(op, "outOffset", p.outOffset), os = nonNegInt(op, "outRowStride", p.outRowStride);
    const x = this.own(op, "x", p.x), out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["x", x]]);
    if (rows === 0 || cols === 0) return;
    const sizes = planChunks(op, [rows, cols], [
      { what: "x", size: (s) => (s[0] - 1) * xs + s[1], limit: this.cap(x.eb) },
      { what: "out", size: (s) => (s[0] - 1) * os + s[1], limit: this.cap(out.eb) },
      { what: "workgroups", size: (s) => cdiv(s[0] * s[1], 256), limit: this.maxGroups },
    ]);
    for (const { start: [r0, c0], count: [rc, cc] } of chunks([rows, cols], sizes)) {
      this.run(copyKernel(), [
        { buf: x, lo: xOff + r0 * xs + c0, hi: xOff + (r0 + rc - 1) * xs + c0 + cc },
        { buf: out, lo: oOff + r0 * os + c0, hi: oOff + (r0 + rc - 1) * os + c0 + cc },
      ], { r0, rc, c0, cc, x_off: xOff, x_stride: xs, o_off: oOff, o_stride: os }, cdiv(rc * cc, 256));
    }
  }

  upsampleNearest2x(p: Upsample2xArgs): void {
    const op = "upsampleNearest2x";
    const rows = nonNegInt(op, "planes", p.planes) * nonNegInt(op, "height", p.height);
    const w = nonNegInt(op, "width", p.width);
    const x = this.own(op, "x", p.x), out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["x", x]]);
    if (rows === 0 || w === 0) return;
    // Input rows are independent: flattened row r feeds output rows 2r and 2r + 1.
    const [size] = planChunks(op, [rows], [
      { what: "x", size: (s) => s[0] * w, limit: this.cap(x.eb) },
      { what: "out", size: (s) => s[0] * 4 * w, limit: this.cap(out.eb) },
      { what: "workgroups", size: (s) => cdiv(s[0] * 4 * w, 256), limit: this.maxGroups },
    ]);
    for (const { start: [r0], count: [rc] } of chunks([rows], [size])) {
      this.run(upsampleKernel(), [{ buf: x, lo: r0 * w, hi: (r0 + rc) * w }, { buf: out, lo: r0 * 4 * w, hi: (r0 + rc) * 4 * w }],
        { r0, rc, w }, cdiv(rc * 4 * w, 256));
    }
  }

  transpose(p: TransposeArgs): void {
    const op = "transpose";
    const B = nonNegInt(op, "batch", p.batch), R = nonNegInt(op, "rows", p.rows), C = nonNegInt(op, "cols", p.cols);
    const x = this.own(op, "x", p.x), out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["x", x]]);
    if (B * R * C === 0) return;
    const ext = [B, R, C];
    const sizes = planChunks(op, ext, [
      { what: "x", size: (s) => ((s[0] - 1) * R + s[1] - 1) * C + s[2], limit: this.cap(x.eb) },
      { what: "out", size: (s) => ((s[0] - 1) * C + s[2] - 1) * R + s[1], limit: this.cap(out.eb) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 16) * cdiv(s[2], 16), limit: this.maxGroups },
    ]);
    for (const { start: [b0, r0, c0], count: [bc, rc, cc] } of chunks(ext, sizes)) {
      const tiles_r = cdiv(rc, 16), tiles_c = cdiv(cc, 16);
      this.run(transposeKernel(), [
        { buf: x, lo: (b0 * R + r0) * C + c0, hi: ((b0 + bc - 1) * R + r0 + rc - 1) * C + c0 + cc },
        { buf: out, lo: (b0 * C + c0) * R + r0, hi: ((b0 + bc - 1) * C + c0 + cc - 1) * R + r0 + rc },
      ], { b0, bc, r0, rc, c0, cc, rows: R, cols: C, tiles_r, tiles_c }, bc * tiles_r * tiles_c);
    }
  }

  softmax(p: SoftmaxArgs): void {
    const op = "softmax";
    const rows = nonNegInt(op, "rows", p.rows), cols = nonNegInt(op, "cols", p.cols);
    const x = this.own(op, "x", p.x), out = this.own(op, "out", p.out);
    if (rows === 0 || cols === 0) return;
    const [size] = planChunks(op, [rows], [
      { what: "x/out rows", size: (s) => s[0] * cols, limit: this.cap(this.eb) },
      { what: "workgroups", size: (s) => s[0], limit: this.maxGroups },
    ]);
    for (const { start: [r0], count: [rc] } of chunks([rows], [size])) {
      const r = { lo: r0 * cols, hi: (r0 + rc) * cols };
      this.run(softmaxKernel(), [{ buf: x, ...r }, { buf: out, ...r }], { r0, rc, cols }, rc);
    }
  }

  groupNorm(p: GroupNormArgs): void {
    const op = "groupNorm";
    const N = nonNegInt(op, "batch", p.batch), C = nonNegInt(op, "channels", p.channels);
    const S = nonNegInt(op, "spatial", p.spatial), G = nonNegInt(op, "groups", p.groups);
    if (G === 0 || C % G !== 0) throw new AutoencoderKLError(`webgpu ${op}`, `groups (${G}) must divide channels (${C})`);
    if (!(typeof p.eps === "number" && p.eps >= 0)) throw new AutoencoderKLError(`webgpu ${op}`, `eps must be a non-negative number`);
    const act = this.checkActivation(op, p.activation);
    const x = this.own(op, "x", p.x), gamma = this.own(op, "gamma", p.gamma), beta = this.own(op, "beta", p.beta);
    const out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["gamma", gamma], ["beta", beta]]);
    if (N * C * S === 0) return;
    const cpg = C / G, span = cpg * S, NG = N * G;
    const slice = Math.min(span, GN_SLICE, this.cap(x.eb));
    const parts = cdiv(span, slice);
    const part = this.allocRaw(NG * parts * 3, 4);
    const stat = this.allocRaw(NG * 2, 4);
    const cap4 = this.cap(4);

    // 1. per-slice (count, mean, M2)
    const total = NG * parts;
    const [ss] = planChunks(op, [total], [
      { what: "x", size: (s) => s[0] * slice, limit: this.cap(x.eb) },
      { what: "partials", size: (s) => s[0] * 3, limit: cap4 },
      { what: "workgroups", size: (s) => s[0], limit: this.maxGroups },
    ]);
    const sliceLo = (s: number): number => Math.floor(s / parts) * span + (s % parts) * slice;
    const sliceHi = (s: number): number => Math.floor(s / parts) * span + Math.min(span, ((s % parts) + 1) * slice);
    for (const { start: [s0], count: [sc] } of chunks([total], [ss])) {
      this.run(groupNormStatsKernel(), [{ buf: x, lo: sliceLo(s0), hi: sliceHi(s0 + sc - 1) }, { buf: part, lo: s0 * 3, hi: (s0 + sc) * 3 }],
        { s0, sc, span, slice, parts }, sc);
    }
    // 2. per-group mean and 1/std
    const [gs] = planChunks(op, [NG], [
      { what: "partials", size: (s) => s[0] * parts * 3, limit: cap4 },
      { what: "workgroups", size: (s) => cdiv(s[0], 64), limit: this.maxGroups },
    ]);
    for (const { start: [g0], count: [gc] } of chunks([NG], [gs])) {
      this.run(groupNormFinalKernel(), [{ buf: part, lo: g0 * parts * 3, hi: (g0 + gc) * parts * 3 }, { buf: stat, lo: g0 * 2, hi: (g0 + gc) * 2 }],
        { g0, gc, parts, eps: p.eps }, cdiv(gc, 64));
    }
    // 3. normalise + affine + activation
    const gIndex = (e: number): number => Math.floor(e / (C * S)) * G + Math.floor((Math.floor(e / S) % C) / cpg);
    this.elementwise(op, N * C * S, [x.eb, out.eb], (start, count) => {
      const end = start + count;
      const n0 = Math.floor(start / (C * S)), n1 = Math.floor((end - 1) / (C * S));
      const ch = n0 === n1 ? { lo: Math.floor(start / S) % C, hi: (Math.floor((end - 1) / S) % C) + 1 } : { lo: 0, hi: C };
      const r = { lo: start, hi: end };
      this.run(groupNormApplyKernel(act), [
        { buf: x, ...r }, { buf: gamma, ...ch }, { buf: beta, ...ch },
        { buf: stat, lo: gIndex(start) * 2, hi: gIndex(end - 1) * 2 + 2 }, { buf: out, ...r },
      ], { start, count, spatial: S, channels: C, cpg, groups: G }, cdiv(count, 256));
    }, [{ what: "statistics", size: (s) => (cdiv(s[0], span) + 1) * 2, limit: cap4 }, { what: "gamma/beta", size: (s) => Math.min(C, cdiv(s[0], S) + 1), limit: this.cap(gamma.eb) }]);
    this.freeRaw(part);
    this.freeRaw(stat);
  }

  linear(p: LinearArgs): void {
    const op = "linear";
    const rows = nonNegInt(op, "rows", p.rows), inF = nonNegInt(op, "inFeatures", p.inFeatures), outF = nonNegInt(op, "outFeatures", p.outFeatures);
    this.gemm(op, {
      a: this.own(op, "x", p.x), b: this.own(op, "weight", p.weight), bias: p.bias ? this.own(op, "bias", p.bias) : null,
      out: this.own(op, "out", p.out), batch: 1, M: rows, N: outF, K: inF, transB: true, alpha: 1,
    });
  }

  matmul(p: MatmulArgs): void {
    const op = "matmul";
    if (typeof p.alpha !== "number" || !Number.isFinite(p.alpha)) throw new AutoencoderKLError(`webgpu ${op}`, "alpha must be a finite number");
    this.gemm(op, {
      a: this.own(op, "a", p.a), b: this.own(op, "b", p.b), bias: null, out: this.own(op, "out", p.out),
      batch: nonNegInt(op, "batch", p.batch), M: nonNegInt(op, "m", p.m), N: nonNegInt(op, "n", p.n),
      K: nonNegInt(op, "k", p.k), transB: !!p.transposeB, alpha: p.alpha,
    });
  }

  conv2d(p: Conv2dArgs): void {
    const op = "conv2d";
    const N = nonNegInt(op, "batch", p.batch), C = nonNegInt(op, "inChannels", p.inChannels);
    const H = nonNegInt(op, "inHeight", p.inHeight), W = nonNegInt(op, "inWidth", p.inWidth);
    const O = nonNegInt(op, "outChannels", p.outChannels), KH = nonNegInt(op, "kernelH", p.kernelH), KW = nonNegInt(op, "kernelW", p.kernelW);
    const S = nonNegInt(op, "stride", p.stride);
    const pt = nonNegInt(op, "padTop", p.padTop), pb = nonNegInt(op, "padBottom", p.padBottom);
    const pl = nonNegInt(op, "padLeft", p.padLeft), pr = nonNegInt(op, "padRight", p.padRight);
    const OH = nonNegInt(op, "outHeight", p.outHeight), OW = nonNegInt(op, "outWidth", p.outWidth);
    if (S === 0 || KH === 0 || KW === 0) throw new AutoencoderKLError(`webgpu ${op}`, "stride and kernel sizes must be positive");
    const eh = Math.floor((H + pt + pb - KH) / S) + 1, ew = Math.floor((W + pl + pr - KW) / S) + 1;
    if (OH !== eh || OW !== ew) {
      throw new AutoencoderKLError(`webgpu ${op}`, `output ${OH}x${OW} does not match the input, kernel, stride and padding (expected ${eh}x${ew})`);
    }
    const x = this.own(op, "x", p.x), w = this.own(op, "weight", p.weight), out = this.own(op, "out", p.out);
    const bias = p.bias ? this.own(op, "bias", p.bias) : null;
    let res = p.residual ? this.own(op, "residual", p.residual) : null;
    this.noAlias(op, out, [["x", x], ["weight", w], ...(bias ? [["bias", bias] as [string, GpuBuffer]] : [])]);
    // residual == out: accumulate onto out from the first chunk instead of adding at the end.
    const resIsOut = res !== null && res.gpu === out.gpu;
    if (resIsOut) res = null;
    if (N * O * OH * OW === 0) return;
    if (C * H * W === 0) throw new AutoencoderKLError(`webgpu ${op}`, "inChannels, inHeight and inWidth must be positive for a non-empty output");
    const KA = KH * KW;
    const inRows = (rc: number): number => Math.min(H, (rc - 1) * S + KH);
    const ext = [N, O, OH, C];
    const sizes = planChunks(op, ext, [
      { what: "x", size: (s) => ((s[0] - 1) * C + s[3] - 1) * H * W + inRows(s[2]) * W, limit: this.cap(x.eb) },
      { what: "weight", size: (s) => ((s[1] - 1) * C + s[3]) * KA, limit: this.cap(w.eb) },
      { what: "out", size: (s) => ((s[0] - 1) * O + s[1] - 1) * OH * OW + s[2] * OW, limit: this.cap(out.eb) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 64) * cdiv(s[2] * OW, 64), limit: this.maxGroups },
    ]);
    for (const { start: [n0, o0, oy0, c0], count: [bc, oc, rc, cc] } of chunks(ext, sizes)) {
      const iyLo = Math.min(Math.max(oy0 * S - pt, 0), H - 1);
      const iyHi = Math.max(Math.min((oy0 + rc - 1) * S - pt + KH, H), iyLo + 1);
      const outR = { lo: ((n0 * O + o0) * OH + oy0) * OW, hi: (((n0 + bc - 1) * O + o0 + oc - 1) * OH + oy0 + rc) * OW };
      const lastC = c0 + cc === C;
      const tiles_p = cdiv(rc * OW, 64), tiles_o = cdiv(oc, 64);
      const flags = (c0 > 0 || resIsOut ? 1 : 0) | (c0 === 0 && bias ? 2 : 0) | (lastC && res ? 4 : 0);
      this.run(convKernel(KH, KW), [
        { buf: x, lo: ((n0 * C + c0) * H + iyLo) * W, hi: ((n0 + bc - 1) * C + c0 + cc - 1) * H * W + iyHi * W },
        { buf: w, lo: (o0 * C + c0) * KA, hi: ((o0 + oc - 1) * C + c0 + cc) * KA },
        bias && c0 === 0 ? { buf: bias, lo: o0, hi: o0 + oc } : null,
        res && lastC ? { buf: res, ...outR } : null,
        { buf: out, ...outR },
      ], {
        n0, bc, o0, oc, oy0, rc, c0, cc, C, H, W, O, OH, OW, KH, KW, sy: S, pad_t: pt, pad_l: pl, tiles_p, tiles_o, flags,
      }, bc * tiles_p * tiles_o);
    }
  }

  attention(p: AttentionArgs): void {
    const op = "attention";
    const B = nonNegInt(op, "batch", p.batch), NQ = nonNegInt(op, "queries", p.queries);
    const NK = nonNegInt(op, "keys", p.keys), D = nonNegInt(op, "dim", p.dim);
    if (typeof p.scale !== "number" || !Number.isFinite(p.scale)) throw new AutoencoderKLError(`webgpu ${op}`, "scale must be a finite number");
    const q = this.own(op, "q", p.q), k = this.own(op, "k", p.k), v = this.own(op, "v", p.v), out = this.own(op, "out", p.out);
    this.noAlias(op, out, [["q", q], ["k", k], ["v", v]]);
    if (B * NQ * D === 0) return;
    if (NK === 0) throw new AutoencoderKLError(`webgpu ${op}`, "keys must be positive (softmax over no keys)");
    const ext = [B, NQ, NK];
    const sizes = planChunks(op, ext, [
      { what: "q/out", size: (s) => ((s[0] - 1) * NQ + s[1]) * D, limit: this.cap(this.eb) },
      { what: "k/v", size: (s) => ((s[0] - 1) * NK + s[2]) * D, limit: this.cap(this.eb) },
      { what: "row statistics", size: (s) => ((s[0] - 1) * NQ + s[1]) * 2, limit: this.cap(4) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 16), limit: this.maxGroups },
    ]);
    // Running max/sum per query row only need to survive between dispatches when keys are split.
    const ml = sizes[2] < NK ? this.allocRaw(B * NQ * 2, 4) : null;
    for (const { start: [b0, q0, k0], count: [bc, qc, kc] } of chunks(ext, sizes)) {
      const qr = { lo: (b0 * NQ + q0) * D, hi: ((b0 + bc - 1) * NQ + q0 + qc) * D };
      const kr = { lo: (b0 * NK + k0) * D, hi: ((b0 + bc - 1) * NK + k0 + kc) * D };
      const tiles_q = cdiv(qc, 16);
      const flags = (k0 === 0 ? 1 : 0) | (k0 + kc === NK ? 2 : 0);
      this.run(attentionKernel(), [
        { buf: q, ...qr }, { buf: k, ...kr }, { buf: v, ...kr }, { buf: out, ...qr },
        ml ? { buf: ml, lo: (b0 * NQ + q0) * 2, hi: ((b0 + bc - 1) * NQ + q0 + qc) * 2 } : null,
      ], { b0, bc, q0, qc, k0, kc, NQ, NK, D, tiles_q, scale: p.scale, flags }, bc * tiles_q);
    }
    if (ml) this.freeRaw(ml);
  }

  // ---- internals ------------------------------------------------------------------------------------

  private gemm(op: string, g: {
    a: GpuBuffer; b: GpuBuffer; bias: GpuBuffer | null; out: GpuBuffer;
    batch: number; M: number; N: number; K: number; transB: boolean; alpha: number;
  }): void {
    const { a, b, bias, out, batch, M, N, K, transB, alpha } = g;
    this.noAlias(op, out, [["a", a], ["b", b], ...(bias ? [["bias", bias] as [string, GpuBuffer]] : [])]);
    if (batch * M * N === 0) return;
    const ext = [batch, M, N, Math.max(K, 1)];
    const sizes = planChunks(op, ext, [
      { what: "a", size: (s) => ((s[0] - 1) * M + s[1] - 1) * K + s[3], limit: this.cap(a.eb) },
      transB
        ? { what: "b", size: (s) => ((s[0] - 1) * N + s[2] - 1) * K + s[3], limit: this.cap(b.eb) }
        : { what: "b", size: (s) => ((s[0] - 1) * K + s[3] - 1) * N + s[2], limit: this.cap(b.eb) },
      { what: "out", size: (s) => ((s[0] - 1) * M + s[1] - 1) * N + s[2], limit: this.cap(out.eb) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 64) * cdiv(s[2], 64), limit: this.maxGroups },
    ]);
    for (const { start: [b0, m0, n0, k0], count: [bc, mc, nc, kc0] } of chunks(ext, sizes)) {
      const kc = K === 0 ? 0 : kc0;
      const bLast = b0 + bc - 1;
      // K = 0 reads nothing from a and b; bind one element so the ranges stay valid.
      const aR = K === 0 ? { lo: 0, hi: 1 } : { lo: (b0 * M + m0) * K + k0, hi: (bLast * M + m0 + mc - 1) * K + k0 + kc };
      const bR = K === 0 ? { lo: 0, hi: 1 } : transB
        ? { lo: (b0 * N + n0) * K + k0, hi: (bLast * N + n0 + nc - 1) * K + k0 + kc }
        : { lo: (b0 * K + k0) * N + n0, hi: (bLast * K + k0 + kc - 1) * N + n0 + nc };
      const tiles_m = cdiv(mc, 64), tiles_n = cdiv(nc, 64);
      const flags = (k0 > 0 ? 1 : 0) | (k0 === 0 && bias ? 2 : 0);
      this.run(gemmKernel(transB), [
        K === 0 ? null : { buf: a, ...aR }, K === 0 ? null : { buf: b, ...bR },
        bias && k0 === 0 ? { buf: bias, lo: n0, hi: n0 + nc } : null,
        { buf: out, lo: (b0 * M + m0) * N + n0, hi: (bLast * M + m0 + mc - 1) * N + n0 + nc },
      ], { b0, bc, m0, mc, n0, nc, k0, kc, M, N, K, tiles_m, tiles_n, alpha, flags }, bc * tiles_m * tiles_n);
    }
  }

  /** Splits a flat elementwise range so every binding and the grid fit, then calls `body` per chunk. */
  private elementwise(op: string, length: number, ebs: readonly number[], body: (start: number, count: number) => void, extra: Constraint[] = []): void {
    if (length === 0) return;
    const [size] = planChunks(op, [length], [
      { what: "elements", size: (s) => s[0], limit: Math.min(...ebs.map((e) => this.cap(e))) },
      { what: "workgroups", size: (s) => cdiv(s[0], 256), limit: this.maxGroups },
      ...extra,
    ]);
    for (const { start: [s0], count: [c] } of chunks([length], [size])) body(s0, c);
  }

  /** Largest element span one binding may cover once its offset is aligned down. */
  private cap(eb: number): number {
    return Math.floor((this.limits.maxStorageBufferBindingSize - this.storageAlign - 4) / eb);
  }

  private checkActivation(op: string, a: unknown): Parameters<typeof activationKernel>[0] {
    if (a === "none" || a === "silu" || a === "mish" || a === "gelu" || a === "relu") return a;
    throw new AutoencoderKLError(`webgpu ${op}`, `activation must be one of none, silu, mish, gelu, relu; got ${String(a)}`);
  }

  private own(op: string, field: string, b: DeviceBuffer): GpuBuffer {
    if (this.disposed) throw new AutoencoderKLError(`webgpu ${op}`, "the backend was disposed");
    if (!(b instanceof GpuBuffer) || b.owner !== this) throw new AutoencoderKLError(`webgpu ${op}`, `${field} was not allocated by this backend`);
    if (!b.gpu) throw new AutoencoderKLError(`webgpu ${op}`, `${field} was already freed`);
    return b;
  }

  private noAlias(op: string, out: GpuBuffer, inputs: [string, GpuBuffer][]): void {
    for (const [name, b] of inputs) {
      if (b.gpu === out.gpu) throw new AutoencoderKLError(`webgpu ${op}`, `out must not alias ${name}`);
    }
  }

  private track(g: GPUBuffer): GPUBuffer {
    this.allBuffers.add(g);
    return g;
  }

  private destroy(g: GPUBuffer): void {
    this.allBuffers.delete(g);
    g.destroy();
  }

  private allocRaw(length: number, eb: 2 | 4, zero = false): GpuBuffer {
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

  private freeRaw(b: GpuBuffer): void {
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
    const defs: [KernelDef, number[]][] = [];
    const plain = (d: KernelDef): number[] => d.bindings.map((_, i) => i);
    for (const d of [convKernel(3, 3), convKernel(1, 1), gemmKernel(true), gemmKernel(false), attentionKernel(), softmaxKernel(), addKernel(),
      groupNormStatsKernel(), groupNormFinalKernel(), upsampleKernel(), transposeKernel(), copyKernel()]) defs.push([d, plain(d)]);
    for (const a of activations) {
      defs.push([groupNormApplyKernel(a), plain(groupNormApplyKernel(a))], [groupNormApplyKernel(a), [0, 1, 2, 3, 0]]);
      defs.push([activationKernel(a), plain(activationKernel(a))], [activationKernel(a), [0, 0]]);
      defs.push([channelAffineKernel(a), plain(channelAffineKernel(a))], [channelAffineKernel(a), [0, 1, 2, 0]]);
    }
    // in-place variants: run() roots every alias of a written buffer at its first binding
    defs.push([addKernel(), [0, 1, 0]], [addKernel(), [0, 1, 1]]);
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
  private run(def: KernelDef, binds: (Bind | null)[], params: Record<string, number>, groups: number): void {
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
      const same = [];
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
