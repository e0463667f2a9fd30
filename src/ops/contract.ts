import type { Activation, DeviceBuffer } from "../backends/kernels.js";
import { ACTIVATION_CODE } from "../backends/wasm/exports.generated.js";
import { AutoencoderKLError } from "../errors.js";

/**
 * The kernel contract's rules as code: every op's `validate()` runs them before any backend touches memory,
 * so a rule (sizes are positive integers, `out` does not alias an input unless the op allows it, buffers are
 * long enough, activations are known) throws the same AutoencoderKLError on every backend, the reference
 * included. Whether a buffer belongs to the backend is the runtime's check.
 */
export class Rules {
  constructor(readonly where: string) {}

  fail(message: string): never {
    throw new AutoencoderKLError(this.where, message);
  }

  /** Every value is an integer ≥ 1 (a batch or dimension of 0 is a caller bug, never a silent no-op). */
  positive(values: Record<string, number>): void {
    for (const [k, v] of Object.entries(values)) {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1)
        this.fail(`${k} must be a positive integer, got ${String(v)}`);
    }
  }

  /** Every value is an integer ≥ 0 (lengths of flat ops, offsets). */
  nonNegative(values: Record<string, number>): void {
    for (const [k, v] of Object.entries(values)) {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
        this.fail(`${k} must be a non-negative integer, got ${String(v)}`);
    }
  }

  finite(name: string, v: number): void {
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(`${name} must be a finite number, got ${String(v)}`);
  }

  /** `out` is none of `inputs` (the ops that may work in place leave those inputs out). */
  noAlias(out: DeviceBuffer, inputs: Record<string, DeviceBuffer | null | undefined>): void {
    for (const [k, v] of Object.entries(inputs)) if (v === out) this.fail(`out must not alias ${k}`);
  }

  /** The buffer is an f32 buffer holding at least `need` elements. */
  fits(what: string, b: DeviceBuffer | null | undefined, need: number): void {
    this.fitsAny(what, b, need);
    if (b?.dtype === "f16")
      this.fail(
        `${what} is an f16 buffer; only the weights of conv2d and linear may be f16, every other buffer is f32`,
      );
  }

  /** Like `fits`, but an f16 buffer (allocHalf) is accepted too: the weights that kernels widen while packing. */
  fitsWeight(what: string, b: DeviceBuffer | null | undefined, need: number): void {
    this.fitsAny(what, b, need);
  }

  private fitsAny(what: string, b: DeviceBuffer | null | undefined, need: number): asserts b is DeviceBuffer {
    if (b === null || b === undefined || typeof b.length !== "number") this.fail(`${what} must be a buffer`);
    if (b.length < need) this.fail(`${what} holds ${b.length} elements, needs ${need}`);
  }

  activation(a: Activation): void {
    if (!Object.hasOwn(ACTIVATION_CODE, a)) {
      this.fail(`activation must be one of ${Object.keys(ACTIVATION_CODE).join(", ")}; got ${JSON.stringify(a)}`);
    }
  }
}

/** The code the WASM kernels switch on (validated first). */
export const activationCode = (a: Activation): number => ACTIVATION_CODE[a];

/** Activations whose cost is one compare, not an exp (cost estimates). */
export const isCheapActivation = (a: Activation): boolean => a === "none" || a === "relu";
