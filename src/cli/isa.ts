// Which WebAssembly instruction set the CLI's kernels use. Relaxed SIMD (fused multiply-add) is 1.4–1.6×
// faster than plain SIMD; Node ≥ 22 and Chromium validate it by default, Node 20 only behind V8's
// --experimental-wasm-relaxed-simd, which NODE_OPTIONS refuses. So the CLI turns the flag on itself, from
// inside the process, before the first WebAssembly compile, and then checks that it took (workers
// started later inherit V8's flags). Detect, never assume: if the probe still fails, plain SIMD runs.
import { setFlagsFromString } from "node:v8";
import { wasmRelaxedSimdSupported } from "../backends/wasm/index.js";
import { UsageError } from "./model.js";

export type IsaChoice = "auto" | "relaxed" | "simd";
export const ISA_CHOICES: readonly IsaChoice[] = ["auto", "relaxed", "simd"];

/** What the runtime offers after prepareIsa: whether relaxed SIMD validates, and how it came to. */
export interface IsaState {
  choice: IsaChoice;
  /** The instruction set the wasm backend runs with this choice. */
  isa: "relaxed" | "simd";
  /** "native" (the runtime validates relaxed SIMD by itself), "v8 flag" (turned on here), "unavailable", or "not asked" (--isa simd). */
  relaxedSimd: "native" | "v8 flag" | "unavailable" | "not asked";
}

const RELAXED_FLAG = "--experimental-wasm-relaxed-simd";

export function parseIsa(value: string | undefined): IsaChoice {
  const v = (value ?? "auto") as IsaChoice;
  if (!ISA_CHOICES.includes(v))
    throw new UsageError(`--isa must be one of ${ISA_CHOICES.join(", ")}, got ${JSON.stringify(value)}`);
  return v;
}

/**
 * Makes relaxed SIMD available when the choice wants it (auto, relaxed): validates the probe module, and
 * on a runtime that refuses it sets V8's flag and validates again. Call before any WebAssembly compile.
 * --isa simd leaves the runtime alone.
 */
export function prepareIsa(choice: IsaChoice): IsaState {
  if (choice === "simd") return { choice, isa: "simd", relaxedSimd: "not asked" };
  if (wasmRelaxedSimdSupported()) return { choice, isa: "relaxed", relaxedSimd: "native" };
  try {
    setFlagsFromString(RELAXED_FLAG);
  } catch {
    // an embedder without V8 flags: plain SIMD it is
  }
  if (wasmRelaxedSimdSupported()) return { choice, isa: "relaxed", relaxedSimd: "v8 flag" };
  return { choice, isa: "simd", relaxedSimd: "unavailable" };
}

/** One line for humans: which instruction set and why. */
export function isaLine(s: IsaState): string {
  const how = {
    native: "this runtime validates it",
    "v8 flag": `enabled with V8's ${RELAXED_FLAG}`,
    unavailable: "relaxed SIMD is unavailable in this runtime",
    "not asked": "--isa simd",
  }[s.relaxedSimd];
  return `${s.isa === "relaxed" ? "relaxed SIMD" : "plain SIMD"} (${how})`;
}

/** "relaxed" | "simd" for a wasm backend's kernels, null for the others. */
export function isaOf(kernels: { name: string }): "relaxed" | "simd" | null {
  const set = (kernels as { instructionSet?: string }).instructionSet;
  if (kernels.name !== "wasm" || set === undefined) return null;
  return set === "relaxed-simd" ? "relaxed" : "simd";
}
