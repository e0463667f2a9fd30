import type { DeviceBuffer, Kernels } from "../backends/kernels.js";
import { AbortError } from "../errors.js";
import { shapeSize } from "../tensor/tensor.js";

export interface Progress {
  /** What is running: "encode", "decode" or a tile label. */
  stage: string;
  done: number;
  total: number;
}

export interface RunOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  /**
   * This call's memory budget in MiB, overriding the model's `maxMemoryMiB` (null: no budget for this call).
   * See AutoencoderKL.planMemory.
   */
  maxMemoryMiB?: number | null;
}

/** An activation living in backend memory. Owned by whoever holds it; freed exactly once. */
export class DeviceTensor {
  constructor(
    readonly buf: DeviceBuffer,
    readonly shape: number[],
  ) {}
  get size(): number {
    return this.buf.length;
  }
}

/** What a forward pass carries: the backend, and the caller's progress and cancellation. */
export class RunContext {
  private done = 0;
  /** Every tensor allocated and not yet freed, so an abort or error can release them all. */
  private readonly live = new Set<DeviceTensor>();
  constructor(
    readonly k: Kernels,
    private readonly stage: string,
    private readonly total: number,
    private readonly options: RunOptions = {},
  ) {
    this.checkAbort();
  }

  alloc(shape: number[]): DeviceTensor {
    const t = new DeviceTensor(this.k.alloc(shapeSize(shape)), shape);
    this.live.add(t);
    return t;
  }

  free(...tensors: DeviceTensor[]): void {
    for (const t of tensors) {
      if (this.live.delete(t)) this.k.free(t.buf);
    }
  }

  /** Number of tensors still allocated (0 after a complete pass: nothing leaks). */
  get liveCount(): number {
    return this.live.size;
  }

  /** Frees whatever is still allocated: called when a pass ends early (abort, error). */
  releaseAll(): void {
    for (const t of this.live) this.k.free(t.buf);
    this.live.clear();
  }

  checkAbort(): void {
    if (this.options.signal?.aborted) {
      const reason: unknown = this.options.signal.reason;
      // controller.abort() with no reason gives a DOMException named AbortError: callers get the exported
      // class (instanceof AbortError), the platform's exception as its cause. An Error of their own is theirs.
      if (reason instanceof Error && reason.name !== "AbortError") throw reason;
      throw new AbortError(undefined, { cause: reason });
    }
  }

  /**
   * Marks one block done: reports progress, then stops here if the caller aborted. With a progress
   * callback or a signal, it first yields to the event loop, so a page can repaint and an abort can land
   * even when the kernels run on this thread.
   */
  async step(): Promise<void> {
    this.done++;
    if (this.options.onProgress || this.options.signal) await new Promise((resolve) => setTimeout(resolve, 0));
    this.options.onProgress?.({ stage: this.stage, done: this.done, total: this.total });
    this.checkAbort();
  }
}
