/**
 * Flax checkpoints (diffusion_flax_model.msgpack, as FlaxAutoencoderKL saves them) → the PyTorch
 * state dict diffusers would load: keys `down_blocks_0` → `down_blocks.0`, GroupNorm `scale` →
 * `weight`, attention `query/key/value/proj_attn` → `to_q/to_k/to_v/to_out.0`, conv kernels
 * HWIO → OIHW, dense kernels (in, out) → (out, in). Values are copied exactly.
 */
import { AutoencoderKLError } from "../errors.js";
import { type FloatDtype, floatBytesToF32 } from "../tensor/dtype.js";
import { MAX_TENSOR_ELEMENTS, Tensor } from "../tensor/tensor.js";
import { decodeMsgpack, MsgpackExt } from "./msgpack.js";
import { convertOriginalKey } from "./original-keys.js";

/** flax.serialization's extension codes. */
const EXT_NDARRAY = 1;
const EXT_NPSCALAR = 3;

/** numpy dtype names → (our float dtype, element size); other dtypes are named in errors. */
const NUMPY_FLOATS: Readonly<Record<string, FloatDtype>> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  float64: "F64",
};
const NUMPY_SIZES: Readonly<Record<string, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int8: 1,
  uint8: 1,
  bool: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  complex64: 8,
  complex128: 16,
};

/** An array leaf as stored: shape, numpy dtype name, raw C-order bytes (a view into the file). */
export class FlaxArray {
  constructor(
    readonly shape: number[],
    readonly dtype: string,
    readonly data: Uint8Array,
  ) {}
}

function parseArray(payload: Uint8Array, source: string): FlaxArray {
  const v = decodeMsgpack(payload, source, { maxDepth: 4 });
  if (!Array.isArray(v) || v.length !== 3)
    throw new AutoencoderKLError(source, "flax ndarray extension is not [shape, dtype, bytes]");
  const [shapeV, dtype, data] = v as unknown[];
  if (!Array.isArray(shapeV) || !shapeV.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
    throw new AutoencoderKLError(source, "flax ndarray shape is not a list of non-negative integers");
  }
  if (typeof dtype !== "string") throw new AutoencoderKLError(source, "flax ndarray dtype is not a string");
  if (!(data instanceof Uint8Array)) throw new AutoencoderKLError(source, "flax ndarray data is not bytes");
  return new FlaxArray(shapeV as number[], dtype, data);
}

function checkedCount(shape: readonly number[], where: string, source: string): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (n > MAX_TENSOR_ELEMENTS)
    throw new AutoencoderKLError(source, `${where}: ${n} elements exceed the ${MAX_TENSOR_ELEMENTS}-element limit`);
  return n;
}

/** Float32 values of an array leaf, C order, validated against its shape and dtype. */
function toFloat32(a: FlaxArray, where: string, source: string): Float32Array {
  const dtype = Object.hasOwn(NUMPY_FLOATS, a.dtype) ? NUMPY_FLOATS[a.dtype] : undefined;
  if (!dtype)
    throw new AutoencoderKLError(source, `${where}: dtype ${JSON.stringify(a.dtype)} cannot be loaded as float32`);
  const n = checkedCount(a.shape, where, source);
  const size = NUMPY_SIZES[a.dtype];
  if (a.data.length !== n * size) {
    throw new AutoencoderKLError(
      source,
      `${where}: ${a.dtype} shape [${a.shape.join(", ")}] needs ${n * size} bytes, has ${a.data.length}`,
    );
  }
  return floatBytesToF32(a.data, dtype, n);
}

/** flax's chunked form for arrays over 2^30 bytes: {__msgpack_chunked_array__, shape: {"0":…}, chunks: {"0":…}}. */
function unchunk(node: Map<unknown, unknown>, where: string, source: string): Tensor {
  const tuple = (v: unknown, what: string): unknown[] => {
    if (!(v instanceof Map)) throw new AutoencoderKLError(source, `${where}: chunked array ${what} is malformed`);
    const out: unknown[] = [];
    for (let i = 0; i < v.size; i++) {
      if (!v.has(String(i))) throw new AutoencoderKLError(source, `${where}: chunked array ${what} misses entry ${i}`);
      out.push(v.get(String(i)));
    }
    return out;
  };
  const shape = tuple(node.get("shape"), "shape");
  if (!shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
    throw new AutoencoderKLError(source, `${where}: chunked array shape is malformed`);
  }
  const n = checkedCount(shape as number[], where, source);
  const out = new Float32Array(n);
  let pos = 0;
  for (const chunk of tuple(node.get("chunks"), "chunks")) {
    if (!(chunk instanceof FlaxArray)) throw new AutoencoderKLError(source, `${where}: chunk is not an array`);
    const values = toFloat32(chunk, where, source);
    if (pos + values.length > n)
      throw new AutoencoderKLError(source, `${where}: chunks hold more than shape [${shape.join(", ")}]`);
    out.set(values, pos);
    pos += values.length;
  }
  if (pos !== n) throw new AutoencoderKLError(source, `${where}: chunks hold ${pos} of ${n} elements`);
  return new Tensor(out, shape as number[]);
}

/** (kh, kw, in, out) → (out, in, kh, kw). */
function hwioToOihw(t: Tensor): Tensor {
  const [kh, kw, ci, co] = t.shape;
  const src = t.data;
  const dst = new Float32Array(src.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < ci; i++) {
        const base = ((h * kw + w) * ci + i) * co;
        for (let o = 0; o < co; o++) dst[((o * ci + i) * kh + h) * kw + w] = src[base + o];
      }
  return new Tensor(dst, [co, ci, kh, kw]);
}

/** (in, out) → (out, in). */
function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.shape;
  const dst = new Float32Array(t.data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) dst[j * r + i] = t.data[i * c + j];
  return new Tensor(dst, [c, r]);
}

/** Read a Flax msgpack checkpoint as a diffusers PyTorch state dict (keys and layouts). */
export function readFlaxStateDict(bytes: Uint8Array, source = "diffusion_flax_model.msgpack"): Map<string, Tensor> {
  const root = decodeMsgpack(bytes, source, {
    ext: (type, data) => (type === EXT_NDARRAY || type === EXT_NPSCALAR ? parseArray(data, source) : undefined),
  });
  if (!(root instanceof Map)) throw new AutoencoderKLError(source, "flax checkpoint is not a map of parameters");
  // Some savers wrap the tree as {"params": {...}}.
  const params =
    root.size === 1 && root.get("params") instanceof Map ? (root.get("params") as Map<unknown, unknown>) : root;

  const out = new Map<string, Tensor>();
  const visit = (node: unknown, path: string[]): void => {
    const where = `parameter ${JSON.stringify(path.join("/"))}`;
    if (node instanceof Map) {
      if (node.get("__msgpack_chunked_array__") === true) {
        emit(unchunk(node, where, source), path, where);
        return;
      }
      for (const [k, v] of node) {
        if (typeof k !== "string") throw new AutoencoderKLError(source, `${where}: key ${String(k)} is not a string`);
        visit(v, [...path, k]);
      }
      return;
    }
    if (node instanceof FlaxArray) {
      emit(new Tensor(toFloat32(node, where, source), node.shape), path, where);
      return;
    }
    const kind = node instanceof MsgpackExt ? `msgpack extension ${node.type}` : node === null ? "null" : typeof node;
    throw new AutoencoderKLError(source, `${where}: expected an array, found ${kind}`);
  };
  const emit = (t: Tensor, path: string[], where: string): void => {
    if (path.length === 0)
      throw new AutoencoderKLError(source, "flax checkpoint is a bare array, not a parameter tree");
    const leaf = path[path.length - 1];
    let tensor = t;
    let last = leaf;
    if (leaf === "kernel") {
      last = "weight";
      if (t.shape.length === 4) tensor = hwioToOihw(t);
      else if (t.shape.length === 2) tensor = transpose2d(t);
      else
        throw new AutoencoderKLError(
          source,
          `${where}: kernel of rank ${t.shape.length} is neither a conv nor a dense kernel`,
        );
    } else if (leaf === "scale" || leaf === "embedding") {
      last = "weight";
    }
    // List members are named `resnets_1` in Flax and `resnets.1` in PyTorch.
    const key = [...path.slice(0, -1).map((s) => s.replace(/_(\d+)$/, ".$1")), last].join(".");
    const name = convertOriginalKey(key); // legacy attention names → to_q/to_k/to_v/to_out.0
    if (out.has(name)) throw new AutoencoderKLError(source, `${where}: maps to ${JSON.stringify(name)}, already taken`);
    out.set(name, tensor);
  };
  visit(params, []);
  return out;
}
