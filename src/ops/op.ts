import type { Activation, BackendName, DeviceBuffer, MaybePromise } from "../backends/kernels.js";
import type { WasmRuntime } from "../backends/wasm/runtime.js";
import type { WebGPURuntime } from "../backends/webgpu/runtime.js";
import type { KernelDef } from "../backends/webgpu/shaders.js";
import { Rules } from "./contract.js";

/** What the reference backend lends an op: its buffers' host arrays. */
export interface ReferenceRuntime {
  data(b: DeviceBuffer): Float32Array;
}

/**
 * One kernel op, everything about it in one file: its argument type, the contract's checks, the plain
 * TypeScript ground truth, the WASM argument packing and the WGSL dispatch plan. Backends are runtimes that
 * own memory and dispatch; they run `validate` first, then their implementation.
 */
export interface Op<A> {
  readonly name: string;
  /** Throws AutoencoderKLError (naming `rules.where` and the rule) for arguments the contract rejects. */
  validate(rules: Rules, args: A): void;
  reference(rt: ReferenceRuntime, args: A): void;
  wasm(rt: WasmRuntime, args: A): MaybePromise;
  webgpu(rt: WebGPURuntime, args: A): void;
  /**
   * The WGSL pipelines a VAE forward pass uses, compiled ahead by WebGPUKernels.warmup(): each kernel with
   * its binding roots when it runs in place (roots[i] = the binding i shares a buffer with; default: none).
   */
  warmup?(activations: readonly Activation[]): WarmupPipeline[];
}

export interface WarmupPipeline {
  def: KernelDef;
  roots?: number[];
}

export function defineOp<A>(op: Op<A>): Op<A> {
  return op;
}

/** The shared check every backend runs before its implementation. */
export function validate<A>(backend: BackendName, op: Op<A>, args: A): void {
  if (typeof args !== "object" || args === null)
    throw new Rules(`${backend}: ${op.name}`).fail("arguments must be an object");
  op.validate(new Rules(`${backend}: ${op.name}`), args);
}
