import { AutoencoderKLError } from "../../errors.js";
import type { Op, ReferenceRuntime } from "../../ops/op.js";
import { validate } from "../../ops/op.js";
import { installOps, type OpMethods } from "../../ops/registry.js";
import type { DeviceBuffer, Kernels } from "../kernels.js";

/** A reference buffer is a plain Float32Array wrapper. */
class RefBuffer implements DeviceBuffer {
  constructor(public data: Float32Array) {}
  get length(): number {
    return this.data.length;
  }
}

function d(b: DeviceBuffer): Float32Array {
  if (!(b instanceof RefBuffer))
    throw new AutoencoderKLError("reference backend", "buffer was not allocated by this backend");
  return b.data;
}

// the op methods, installed below from the registry
export interface ReferenceKernels extends OpMethods {}

/**
 * Plain TypeScript kernels, written for obviousness, not speed: loops that read like the maths, with
 * float64 accumulation (each op's `reference` in src/ops/). They are the ground truth the SIMD and WGSL
 * kernels are tested against, and they check the contract exactly as the other backends do.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the op methods are declared by the interface of the same name, built from the op registry, and installed on the prototype
export class ReferenceKernels implements Kernels, ReferenceRuntime {
  readonly name = "reference" as const;
  readonly description = "reference (plain TypeScript, float64 accumulation)";

  alloc(length: number): DeviceBuffer {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new AutoencoderKLError("reference backend: alloc", `length must be a non-negative integer, got ${length}`);
    }
    return new RefBuffer(new Float32Array(length));
  }
  free(buffer: DeviceBuffer): void {
    d(buffer);
  }
  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    const a = d(buffer);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > a.length) {
      throw new AutoencoderKLError(
        "reference backend: write",
        `${data.length} values at offset ${offset} do not fit a buffer of ${a.length}`,
      );
    }
    a.set(data, offset);
  }
  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const a = d(buffer);
    return a.slice(0, length ?? a.length);
  }
  /** @internal ReferenceRuntime: the host array behind a buffer. */
  data(b: DeviceBuffer): Float32Array {
    return d(b);
  }

  dispose(): void {}
}

installOps(
  ReferenceKernels.prototype,
  (op: Op<unknown>) =>
    function (this: ReferenceKernels, args: unknown): void {
      validate("reference", op, args);
      op.reference(this, args);
    },
);
