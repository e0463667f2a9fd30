import type { DeviceBuffer, MaybePromise } from "../kernels.js";
import { KERNEL_PARAMS, type KernelArgs, type KernelExports } from "./exports.generated.js";

export type { KernelArgs, KernelExports } from "./exports.generated.js";

/** The kernels that do work (take tid, nt); `KernelArgs[K]` are their named arguments. */
export type KernelName = keyof KernelArgs;

/** One kernel call with named arguments; packing into the AssemblyScript parameter order happens in `pack`. */
export type WasmStep = { [K in KernelName]: { kernel: K; args: KernelArgs[K] } }[KernelName];

/** What the WASM backend lends an op (see WasmKernels). */
export interface WasmRuntime {
  readonly ex: KernelExports;
  /** 3×3 stride-1 pad-1 convolutions with at least this many channels go through Winograd. */
  readonly winogradMinChannels: number;
  /** Their tile: 2, 4 or "auto" (per layer, see winogradTile in ops/conv2d.ts). */
  readonly winogradTile: 2 | 4 | "auto";
  /** How an upsampling F(4×4) conv runs: 1, 2 or 4 phases a pass, "staged" or "auto" (upsamplePhases in ops/conv2d.ts). */
  readonly upsamplePhases: 1 | 2 | 4 | "staged" | "auto";
  /** The buffer's byte offset (0 for no buffer), after checking the backend owns it and it is alive. */
  ptr(what: string, b: DeviceBuffer | null | undefined): number;
  /**
   * Runs the steps in order on one thread count and one scratch (sized by `scratch(nt)` when given): now,
   * or queued behind earlier ops when threaded; `costNs` (one thread's estimate) decides whether to split.
   */
  run(steps: readonly WasmStep[], costNs: number, scratch?: (nt: number) => number): MaybePromise;
}

const RUNTIME_PARAMS = new Set<string>(["scratch", "tid", "nt"]);
const ORDER = new Map<string, readonly string[]>(
  Object.entries(KERNEL_PARAMS).map(([k, ps]) => [k, (ps as readonly string[]).filter((p) => !RUNTIME_PARAMS.has(p))]),
);

/** The step's arguments in the kernel's parameter order (booleans as 0/1), without scratch, tid and nt. */
export function pack(step: WasmStep): number[] {
  const args = step.args as unknown as Record<string, number | boolean>;
  return ORDER.get(step.kernel)!.map((p) => {
    const v = args[p];
    if (v === undefined) throw new Error(`wasm ${step.kernel}: missing argument ${p}`);
    return typeof v === "boolean" ? (v ? 1 : 0) : v;
  });
}

/** Rough single-thread costs (measured on a 2.x GHz x86 core) for the threading decision. */
export const NS_PER_MAC = 0.05;
export const NS_PER_ELEMENT = 0.5; // memory-bound passes
export const NS_PER_TRANSCENDENTAL = 2.5; // exp-based activations, softmax
