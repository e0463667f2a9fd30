import { AutoencoderKLError } from "../../errors.js";
import type { Op, ReferenceRuntime } from "../../ops/op.js";
import { validate } from "../../ops/op.js";
import { installOps, type OpMethods } from "../../ops/registry.js";
import { f16BytesToF32 } from "../../tensor/dtype.js";
import type { BufferDtype, DeviceBuffer, Kernels } from "../kernels.js";

/**
 * A reference buffer is a plain Float32Array wrapper. f16 buffers (allocHalf) are held widened, as f32
 * values: every f16 is exactly an f32, so the ops read them like any other buffer; only `dtype` differs,
 * so the contract's f16 rules are checked here as on the other backends.
 */
class RefBuffer implements DeviceBuffer {
  constructor(
    public data: Float32Array,
    readonly dtype: BufferDtype = "f32",
  ) {}
  get length(): number {
    return this.data.length;
  }
}

function d(b: DeviceBuffer): Float32Array {
  if (!(b instanceof RefBuffer))
    throw new AutoencoderKLError("reference backend", "buffer was not allocated by this backend");
  return b.data;
}

function checkWrite(call: string, buffer: DeviceBuffer, dtype: BufferDtype, n: number, offset: number): Float32Array {
  const a = d(buffer);
  const has = (buffer as RefBuffer).dtype;
  if (has !== dtype) {
    throw new AutoencoderKLError(
      `reference backend: ${call}`,
      `the buffer holds ${has} values; use ${has === "f16" ? "writeHalf" : "write"}`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > a.length) {
    throw new AutoencoderKLError(
      `reference backend: ${call}`,
      `${n} values at offset ${offset} do not fit a buffer of ${a.length}`,
    );
  }
  return a;
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
  allocHalf(length: number): DeviceBuffer {
    const b = this.alloc(length) as RefBuffer;
    return new RefBuffer(b.data, "f16");
  }
  free(buffer: DeviceBuffer): void {
    d(buffer);
  }
  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    checkWrite("write", buffer, "f32", data.length, offset).set(data, offset);
  }
  writeHalf(buffer: DeviceBuffer, data: Uint16Array, offset = 0): void {
    const a = checkWrite("writeHalf", buffer, "f16", data.length, offset);
    // the table conversion writes bits, NaN payloads included
    f16BytesToF32(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), data.length, a.subarray(offset));
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
