/**
 * The one contract every backend implements. Buffers are opaque device allocations of f32 elements;
 * tensors are dense row-major. Image tensors are NCHW; token tensors are [batch, tokens, features].
 * Compute ops may be synchronous (reference, single-threaded wasm) or asynchronous (webgpu, worker
 * threads): callers always `await` them. Ops never allocate their outputs: the caller passes `out`.
 * Unless an op says otherwise, `out` must not alias an input.
 */
import type { OpMethods } from "../ops/registry.js";
import { ACTIVATION_CODE } from "./wasm/exports.generated.js";

export type BackendName = "wasm" | "webgpu" | "reference";

/** What a buffer stores: f32 (every buffer from `alloc`), or f16 bits (`allocHalf`: weights only). */
export type BufferDtype = "f32" | "f16";

/** Opaque device allocation; `length` counts elements of its dtype (absent: f32). */
export interface DeviceBuffer {
  readonly length: number;
  readonly dtype?: BufferDtype;
}

/**
 * Elementwise activations the VAE's resnets can use (config `act_fn`); gelu is the exact erf form. The list
 * and the codes the kernels switch on come from one definition (assembly/common.ts ACT_*).
 */
export type Activation = keyof typeof ACTIVATION_CODE;

export type MaybePromise = void | Promise<void>;

export type { AttentionArgs } from "../ops/attention.js";
export type { Conv2dArgs } from "../ops/conv2d.js";
export type { ActivationArgs, AddArgs, ChannelAffineArgs } from "../ops/elementwise.js";
export type { GroupNormArgs } from "../ops/group-norm.js";
export type { CopyArgs, TransposeArgs } from "../ops/layout.js";
export type { LinearArgs } from "../ops/linear.js";
export type { MatmulArgs } from "../ops/matmul.js";
export type { SoftmaxArgs } from "../ops/softmax.js";
export type { Upsample2xArgs } from "../ops/upsample.js";

/** The contract: memory, plus one method per op in src/ops/registry.ts (each op's file documents its arguments). */
export interface Kernels extends OpMethods {
  readonly name: BackendName;
  /** Human-readable detail: instruction set, thread count, adapter. */
  readonly description: string;

  alloc(length: number): DeviceBuffer;
  free(buffer: DeviceBuffer): void;
  /** Copies host data into a buffer starting at element `offset` (default 0). */
  write(buffer: DeviceBuffer, data: Float32Array, offset?: number): void;
  /** Copies a whole buffer (or its first `length` elements) back to the host; an f16 buffer comes back widened. */
  read(buffer: DeviceBuffer, length?: number): Promise<Float32Array>;
  /**
   * A buffer of `length` f16 values (dtype "f16"), zeroed. Only weights may be f16: conv2d's and linear's
   * `weight` take one and widen it exactly (every f16 is an f32) while packing; every other op argument
   * rejects it. wasm and webgpu keep 2 bytes per value; the reference backend holds the values widened.
   */
  allocHalf(length: number): DeviceBuffer;
  /** Copies f16 bit patterns into an f16 buffer starting at element `offset` (default 0). */
  writeHalf(buffer: DeviceBuffer, data: Uint16Array, offset?: number): void;

  /** Releases every buffer and worker this backend holds. */
  dispose(): void;
}

export const ACTIVATIONS = Object.keys(ACTIVATION_CODE) as readonly Activation[];
