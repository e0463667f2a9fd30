/// <reference types="@webgpu/types" preserve="true" />
import type { BufferDtype, DeviceBuffer } from "../kernels.js";

// Numeric flag values from the WebGPU spec, so nothing depends on GPUBufferUsage & co. being global.
export const USAGE_MAP_READ = 0x1;
export const USAGE_COPY_SRC = 0x4;
export const USAGE_COPY_DST = 0x8;
export const USAGE_UNIFORM = 0x40;
export const USAGE_STORAGE = 0x80;
export const MAP_MODE_READ = 0x1;

/** Pooled-but-free bytes kept before freed buffers are destroyed instead. */
const POOL_BUDGET_BYTES = 1 << 30;

/** A backend buffer: a GPUBuffer of a size class, or null once freed. */
export class GpuBuffer implements DeviceBuffer {
  constructor(
    readonly length: number,
    public gpu: GPUBuffer | null,
    /** Bytes of the underlying GPUBuffer (its size class). */
    readonly size: number,
    /** Bytes per element: 4, or 2 with f16 storage. */
    readonly eb: 2 | 4,
    /** The backend that allocated it. */
    readonly owner: object,
  ) {}
  /** "f16" for allocHalf buffers: f16 bits, 2 bytes each (eb 2) whatever the storage type. */
  dtype: BufferDtype = "f32";
}

export const roundUp = (v: number, a: number): number => Math.ceil(v / a) * a;

/** Smallest size class >= bytes: 256 B minimum, then 8 steps per power of two (<= 12.5% waste). */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

export type PoolKind = "storage" | "staging";

/**
 * GPU buffers recycled by size class (storage buffers and map-read staging buffers apart), up to a budget of
 * pooled-but-free bytes; past it, freed buffers are destroyed. Every GPUBuffer the backend creates is
 * tracked so dispose() can destroy them all.
 */
export class BufferPool {
  private readonly lists: Record<PoolKind, Map<number, GPUBuffer[]>> = { storage: new Map(), staging: new Map() };
  private readonly all = new Set<GPUBuffer>();
  private pooledBytes = 0;
  private deferred: GPUBuffer[] = [];
  private closed = false;

  /** `create` makes a new GPUBuffer (the backend wraps it in an out-of-memory error scope). */
  constructor(private readonly create: (size: number, usage: number) => GPUBuffer) {}

  /** Tracks a buffer created elsewhere (uniform ring, dummies). */
  track(g: GPUBuffer): GPUBuffer {
    this.all.add(g);
    return g;
  }

  /** A free buffer of exactly `cls` bytes from the pool (`reused` true: it may hold old data), or a new one. */
  take(kind: PoolKind, cls: number): { g: GPUBuffer; reused: boolean } {
    const g = this.lists[kind].get(cls)?.pop();
    if (g) {
      this.pooledBytes -= cls;
      return { g, reused: true };
    }
    const usage =
      kind === "storage" ? USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST : USAGE_MAP_READ | USAGE_COPY_DST;
    return { g: this.track(this.create(cls, usage)), reused: false };
  }

  /**
   * Returns a buffer to the pool, or destroys it when the pool is full: at once, or (`inFlight`: recorded but
   * unsubmitted commands may still use it) after the next submit, see destroyDeferred().
   */
  release(kind: PoolKind, g: GPUBuffer, cls: number, inFlight: boolean): void {
    if (this.closed) return;
    if (this.pooledBytes + cls > POOL_BUDGET_BYTES) {
      if (inFlight) this.deferred.push(g);
      else this.destroy(g);
      return;
    }
    this.pooledBytes += cls;
    let list = this.lists[kind].get(cls);
    if (!list) this.lists[kind].set(cls, (list = []));
    list.push(g);
  }

  /** Destroys the buffers whose destruction waited for a submit. */
  destroyDeferred(): void {
    for (const g of this.deferred) this.destroy(g);
    this.deferred = [];
  }

  /** Destroys every tracked buffer; later releases are ignored. */
  destroyAll(): void {
    this.closed = true;
    for (const g of this.all) g.destroy();
    this.all.clear();
    this.lists.storage.clear();
    this.lists.staging.clear();
  }

  private destroy(g: GPUBuffer): void {
    this.all.delete(g);
    g.destroy();
  }
}
