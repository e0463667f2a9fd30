import type { DeviceBuffer } from "../kernels.js";
import type { GpuBuffer } from "./buffers.js";
import type { Constraint } from "./plan.js";
import type { KernelDef } from "./shaders.js";

/** A binding of one dispatch: the buffer and the element range [lo, hi) the dispatch touches. */
export interface Bind {
  buf: GpuBuffer;
  lo: number;
  hi: number;
}

/** What the WebGPU backend lends an op (see WebGPUKernels): buffers, limits and dispatch. */
export interface WebGPURuntime {
  /** Bytes per stored element: 4, or 2 with f16 storage. */
  readonly eb: 2 | 4;
  /** Most workgroups one dispatch may have once its grid is folded. */
  readonly maxGroups: number;
  /** The backend's buffer behind `b` (throws when foreign or freed). */
  own(op: string, field: string, b: DeviceBuffer): GpuBuffer;
  /** Largest element span one binding may cover once its offset is aligned down. */
  cap(eb: number): number;
  /** Records one dispatch of `def` over `groups` workgroups. */
  run(def: KernelDef, binds: (Bind | null)[], params: Record<string, number>, groups: number): void;
  /** Temporary buffers (statistics, partial sums) outside the pool's zeroing. */
  allocRaw(length: number, eb: 2 | 4): GpuBuffer;
  freeRaw(b: GpuBuffer): void;
  /** Splits a flat elementwise range so every binding and the grid fit, then calls `body` per chunk. */
  elementwise(
    op: string,
    length: number,
    ebs: readonly number[],
    body: (start: number, count: number) => void,
    extra?: Constraint[],
  ): void;
}
