/**
 * The one contract every backend implements. Buffers are opaque device allocations of f32 elements;
 * tensors are dense row-major. Image tensors are NCHW; token tensors are [batch, tokens, features].
 * Compute ops may be synchronous (reference, single-threaded wasm) or asynchronous (webgpu, worker
 * threads): callers always `await` them. Ops never allocate their outputs: the caller passes `out`.
 * Unless an op says otherwise, `out` must not alias an input.
 */

export type BackendName = "wasm" | "webgpu" | "reference";

/** Opaque device allocation; `length` counts f32 elements. */
export interface DeviceBuffer {
  readonly length: number;
}

/** Elementwise activations the VAE's resnets can use (config `act_fn`). gelu is the exact erf form. */
export type Activation = "none" | "silu" | "mish" | "gelu" | "relu";

export type MaybePromise = void | Promise<void>;

export interface Conv2dArgs {
  x: DeviceBuffer; // [batch, inChannels, inHeight, inWidth]
  weight: DeviceBuffer; // [outChannels, inChannels, kernelH, kernelW] (PyTorch layout)
  bias: DeviceBuffer | null; // [outChannels]
  /** Added to the result after the bias (fused residual): same shape as out. */
  residual?: DeviceBuffer | null;
  out: DeviceBuffer; // [batch, outChannels, outHeight, outWidth]
  batch: number;
  inChannels: number;
  inHeight: number;
  inWidth: number;
  outChannels: number;
  kernelH: number;
  kernelW: number;
  stride: number;
  /** Zero padding per side; asymmetric padding expresses Downsample2D's (0, 1, 0, 1) pad. */
  padTop: number;
  padBottom: number;
  padLeft: number;
  padRight: number;
  outHeight: number; // = floor((inHeight + padTop + padBottom - kernelH) / stride) + 1
  outWidth: number; // = floor((inWidth + padLeft + padRight - kernelW) / stride) + 1
}

export interface GroupNormArgs {
  x: DeviceBuffer; // [batch, channels, spatial]
  gamma: DeviceBuffer; // [channels]
  beta: DeviceBuffer; // [channels]
  out: DeviceBuffer; // same shape as x; may alias x
  batch: number;
  channels: number;
  spatial: number; // H*W
  groups: number; // divides channels
  eps: number;
  /** Applied after the affine transform (GroupNorm then activation, fused). */
  activation: Activation;
}

export interface LinearArgs {
  x: DeviceBuffer; // [rows, inFeatures]
  weight: DeviceBuffer; // [outFeatures, inFeatures] (PyTorch layout)
  bias: DeviceBuffer | null; // [outFeatures]
  out: DeviceBuffer; // [rows, outFeatures]
  rows: number;
  inFeatures: number;
  outFeatures: number;
}

export interface MatmulArgs {
  a: DeviceBuffer; // [batch, m, k]
  b: DeviceBuffer; // [batch, k, n], or [batch, n, k] when transposeB
  out: DeviceBuffer; // [batch, m, n]; out = alpha * a @ b
  batch: number;
  m: number;
  n: number;
  k: number;
  transposeB: boolean;
  alpha: number;
}

export interface SoftmaxArgs {
  x: DeviceBuffer; // [rows, cols], softmax along cols
  out: DeviceBuffer; // may alias x
  rows: number;
  cols: number;
}

export interface AttentionArgs {
  q: DeviceBuffer; // [batch, queries, dim]
  k: DeviceBuffer; // [batch, keys, dim]
  v: DeviceBuffer; // [batch, keys, dim]
  out: DeviceBuffer; // [batch, queries, dim] = softmax(scale * q k^T) v, softmax in f32
  batch: number;
  queries: number;
  keys: number;
  dim: number;
  scale: number;
}

export interface AddArgs {
  a: DeviceBuffer;
  b: DeviceBuffer;
  out: DeviceBuffer; // may alias a or b
  length: number;
}

export interface ActivationArgs {
  x: DeviceBuffer;
  out: DeviceBuffer; // may alias x
  length: number;
  activation: Activation;
}

export interface Upsample2xArgs {
  x: DeviceBuffer; // [planes, height, width]
  out: DeviceBuffer; // [planes, 2*height, 2*width], nearest neighbour
  planes: number; // batch * channels
  height: number;
  width: number;
}

export interface TransposeArgs {
  x: DeviceBuffer; // [batch, rows, cols]
  out: DeviceBuffer; // [batch, cols, rows]
  batch: number;
  rows: number;
  cols: number;
}

export interface ChannelAffineArgs {
  x: DeviceBuffer; // [batch, channels, spatial]
  scale: DeviceBuffer; // [batch, channels]
  shift: DeviceBuffer; // [batch, channels]
  out: DeviceBuffer; // activation(x * scale + shift); may alias x
  batch: number;
  channels: number;
  spatial: number;
  activation: Activation;
}

export interface CopyArgs {
  x: DeviceBuffer;
  out: DeviceBuffer; // must not alias x
  /** Copies `rows` rows of `cols` elements: out[outOffset + r*outRowStride + c] = x[xOffset + r*xRowStride + c]. */
  rows: number;
  cols: number;
  xOffset: number;
  xRowStride: number;
  outOffset: number;
  outRowStride: number;
}

export interface Kernels {
  readonly name: BackendName;
  /** Human-readable detail: instruction set, thread count, adapter. */
  readonly description: string;

  alloc(length: number): DeviceBuffer;
  free(buffer: DeviceBuffer): void;
  /** Copies host data into a buffer starting at element `offset` (default 0). */
  write(buffer: DeviceBuffer, data: Float32Array, offset?: number): void;
  /** Copies a whole buffer (or its first `length` elements) back to the host. */
  read(buffer: DeviceBuffer, length?: number): Promise<Float32Array>;

  conv2d(args: Conv2dArgs): MaybePromise;
  groupNorm(args: GroupNormArgs): MaybePromise;
  linear(args: LinearArgs): MaybePromise;
  matmul(args: MatmulArgs): MaybePromise;
  softmax(args: SoftmaxArgs): MaybePromise;
  attention(args: AttentionArgs): MaybePromise;
  add(args: AddArgs): MaybePromise;
  activation(args: ActivationArgs): MaybePromise;
  upsampleNearest2x(args: Upsample2xArgs): MaybePromise;
  transpose(args: TransposeArgs): MaybePromise;
  /** Per-(batch, channel) scale and shift, then an activation: GroupNorm with statistics known in advance. */
  channelAffine(args: ChannelAffineArgs): MaybePromise;
  /** Strided 2-D copy between buffers (crops, concatenations, splitting fused q/k/v). */
  copy(args: CopyArgs): MaybePromise;

  /** Releases every buffer and worker this backend holds. */
  dispose(): void;
}

export const ACTIVATIONS: readonly Activation[] = ["none", "silu", "mish", "gelu", "relu"];
