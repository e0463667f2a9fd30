import { AutoencoderKLError } from "../errors.js";

/** Largest element count we accept for one tensor (4 GiB of f32 would not fit wasm32 anyway). */
export const MAX_TENSOR_ELEMENTS = 2 ** 30;

/** Element count of a shape, validating each dimension. `what` names the tensor in errors. */
export function shapeSize(shape: readonly number[], what = "tensor"): number {
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new AutoencoderKLError(
        what,
        `shape[${i}] = ${String(d)} is not a non-negative integer (shape [${shape.join(", ")}])`,
      );
    }
    n *= d;
    if (n > MAX_TENSOR_ELEMENTS) {
      throw new AutoencoderKLError(what, `shape [${shape.join(", ")}] has more than ${MAX_TENSOR_ELEMENTS} elements`);
    }
  }
  return n;
}

/** A dense float32 tensor in row-major (NCHW for images) order. Host memory; backends copy in and out. */
export class Tensor {
  readonly data: Float32Array;
  readonly shape: number[];

  constructor(data: Float32Array | ArrayLike<number>, shape: readonly number[]) {
    if (!Array.isArray(shape)) throw new AutoencoderKLError("Tensor", "shape must be an array of integers");
    const size = shapeSize(shape, "Tensor");
    const arr = data instanceof Float32Array ? data : Float32Array.from(data ?? []);
    if (arr.length !== size) {
      throw new AutoencoderKLError(
        "Tensor",
        `data has ${arr.length} elements but shape [${shape.join(", ")}] needs ${size}`,
      );
    }
    this.data = arr;
    this.shape = [...shape];
  }

  static zeros(shape: readonly number[]): Tensor {
    return new Tensor(new Float32Array(shapeSize(shape)), shape);
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** A tensor with the same data viewed under another shape of equal size. */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.data, shape);
  }

  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape);
  }
}
