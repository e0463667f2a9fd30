import type { MaybePromise } from "../backends/kernels.js";
import { attention } from "./attention.js";
import { conv2d } from "./conv2d.js";
import { activation, add, channelAffine } from "./elementwise.js";
import { groupNorm } from "./group-norm.js";
import { copy, transpose } from "./layout.js";
import { linear } from "./linear.js";
import { matmul } from "./matmul.js";
import type { Op } from "./op.js";
import { softmax } from "./softmax.js";
import { upsampleNearest2x } from "./upsample.js";

/**
 * Every kernel op, by its `Kernels` method name. Backends install one method per entry, so adding an op is
 * its file (src/ops/), its AssemblyScript kernel and one line here.
 */
export const OPS = {
  conv2d,
  groupNorm,
  linear,
  matmul,
  softmax,
  attention,
  add,
  activation,
  upsampleNearest2x,
  transpose,
  channelAffine,
  copy,
} as const;

export type OpName = keyof typeof OPS;
export type OpArgs<K extends OpName> = (typeof OPS)[K] extends Op<infer A> ? A : never;
/** The op methods of the `Kernels` contract, derived from the registry. */
export type OpMethods = { [K in OpName]: (args: OpArgs<K>) => MaybePromise };

/** Adds one method per op to a backend class's prototype; `impl` runs validate and the backend's side. */
export function installOps<T extends object>(
  proto: T,
  impl: (op: Op<unknown>) => (this: T, args: unknown) => MaybePromise,
): void {
  for (const [name, op] of Object.entries(OPS)) {
    Object.defineProperty(proto, name, { value: impl(op as Op<unknown>), writable: true, configurable: true });
  }
}
