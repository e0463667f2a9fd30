/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import { USAGE_COPY_DST, USAGE_UNIFORM } from "./buffers.js";

/** Dispatches between automatic submits: lets the GPU start while JS keeps encoding. */
const SUBMIT_EVERY = 64;
export const UNIFORM_RING_BYTES = 64 * 1024;

async function firstError(checks: Promise<GPUError | null>[]): Promise<GPUError | null> {
  for (const r of await Promise.allSettled(checks)) {
    if (r.status === "fulfilled" && r.value) return r.value;
    if (r.status === "rejected") return { message: String((r.reason as Error)?.message ?? r.reason) } as GPUError;
  }
  return null;
}

/**
 * Recording and submission: ops are recorded into one command encoder (one compute pass) and submitted
 * lazily — on read, on write, every SUBMIT_EVERY dispatches, or when the uniform ring fills. Errors are
 * collected from error scopes around submits and creations, from uncaptured errors and device loss, and
 * thrown by the next checkErrors() (read, sync). Queue order makes deferred submission safe.
 */
export class Recorder {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  /** Dispatches recorded since creation. */
  totalDispatches = 0;
  readonly uniformBuffer: GPUBuffer;
  private readonly uniformStage = new Uint8Array(UNIFORM_RING_BYTES);
  /** The staged uniform bytes of the dispatches recorded since the last submit. */
  readonly uniformView = new DataView(this.uniformStage.buffer);
  private uniformUsed = 0;
  private errorChecks: Promise<GPUError | null>[] = [];
  private firstError: string | null = null;
  private closed = false;

  /** `afterSubmit` runs after every submit (destroying buffers that waited for it). */
  constructor(
    private readonly device: GPUDevice,
    private readonly uniformAlign: number,
    private readonly afterSubmit: () => void,
  ) {
    this.uniformBuffer = device.createBuffer({ size: UNIFORM_RING_BYTES, usage: USAGE_UNIFORM | USAGE_COPY_DST });
    const onError = (ev: GPUUncapturedErrorEvent): void => {
      this.firstError ??= ev.error.message;
    };
    if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", onError);
    else device.onuncapturederror = onError;
    void device.lost.then((l) => {
      if (!this.closed) this.firstError ??= `device lost (${l.reason}): ${l.message}`;
    });
  }

  /** Commands are recorded but not submitted (a buffer they use must not be destroyed yet). */
  get recording(): boolean {
    return this.encoder !== null;
  }

  /** The command encoder, outside any compute pass (for copies and clears). */
  commands(): GPUCommandEncoder {
    this.endPass();
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  /** The open compute pass. */
  computePass(): GPUComputePassEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    return this.pass;
  }

  /** Reserves `structBytes` of the uniform ring (submitting first when it is full); returns the offset. */
  uniformSlot(structBytes: number): number {
    const slot = Math.ceil(structBytes / this.uniformAlign) * this.uniformAlign;
    if (this.uniformUsed + slot > UNIFORM_RING_BYTES) this.flush();
    const at = this.uniformUsed;
    this.uniformUsed += slot;
    return at;
  }

  /** Counts a recorded dispatch; submits every SUBMIT_EVERY. */
  dispatched(): void {
    this.totalDispatches++;
    if (++this.dispatches >= SUBMIT_EVERY) this.flush();
  }

  /** Runs `fn` inside an error scope whose outcome the next checkErrors() reports. */
  scoped<T>(filter: GPUErrorFilter, fn: () => T): T {
    this.device.pushErrorScope(filter);
    try {
      return fn();
    } finally {
      this.errorChecks.push(this.device.popErrorScope());
    }
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
    this.afterSubmit();
  }

  /** Throws the first error recorded since the last check (as AutoencoderKLError). */
  async checkErrors(): Promise<void> {
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

  /** Stops reporting device loss (the backend is being disposed). */
  close(): void {
    this.closed = true;
    this.uniformBuffer.destroy();
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }
}
