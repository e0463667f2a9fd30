/**
 * Storage dtypes ↔ float32. Compute is always f32; files store f16, bf16, f32, f64 (little-endian) or
 * 8-bit floats (F8_E4M3, F8_E5M2).
 * Bulk converters read little-endian bytes (any alignment, any host endianness) and write a fresh
 * Float32Array; encoders round to nearest, ties to even, like PyTorch's `.half()` / `.bfloat16()`.
 */

/** True on every platform that matters; a DataView path keeps big-endian hosts correct. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** f32 bit patterns for all 65536 half values, built on first use (256 KiB). */
let halfTable: Uint32Array | null = null;

function buildHalfTable(): Uint32Array {
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f) {
      // Inf and NaN: keep the payload so NaN stays NaN (quiet bit included).
      bits = 0x7f800000 | (mant << 13);
    } else if (exp === 0) {
      // Zero and subnormals: m·2^-24 is exact in f32.
      scratchF32[0] = mant * 2 ** -24;
      bits = scratchU32[0];
    } else {
      bits = ((exp + 112) << 23) | (mant << 13);
    }
    table[h] = (sign | bits) >>> 0;
  }
  return table;
}

function getHalfTable(): Uint32Array {
  return (halfTable ??= buildHalfTable());
}

/** One half-precision bit pattern → number. */
export function f16BitsToF32(h: number): number {
  scratchU32[0] = getHalfTable()[h & 0xffff];
  return scratchF32[0];
}

/** One bfloat16 bit pattern → number. */
export function bf16BitsToF32(b: number): number {
  scratchU32[0] = (b & 0xffff) << 16;
  return scratchF32[0];
}

/** f32 bit pattern → f16 bit pattern, round to nearest even; overflow → ±inf, NaN stays NaN. */
function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const abs = f & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    // NaN: keep the top payload bits and force quiet so a payload in the low bits can't become inf.
    return sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  const exp = abs >>> 23;
  if (exp >= 143) return sign | 0x7c00; // ≥ 2^16: beyond the largest finite half even after rounding
  if (exp < 113) {
    // Result is a half subnormal (or zero): m = M · 2^(exp-126) with M the 24-bit significand.
    if (exp < 101) return sign; // < 2^-26: below half the smallest subnormal → ±0
    const m = (abs & 0x7fffff) | 0x800000;
    const shift = 126 - exp; // 14..25
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) !== 0)) q++;
    return sign | q; // q may reach 0x400, which is exactly the smallest normal
  }
  let h = ((exp - 112) << 10) | ((abs >>> 13) & 0x3ff);
  const rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // carry into the exponent is correct, up to inf
  return sign | h;
}

/** f32 bit pattern → bf16 bit pattern, round to nearest even; NaN stays a (quiet) NaN. */
function f32BitsToBf16Bits(f: number): number {
  if ((f & 0x7fffffff) > 0x7f800000) return ((f >>> 16) | 0x40) & 0xffff;
  return ((f >>> 0) + 0x7fff + ((f >>> 16) & 1)) >>> 16;
}

/** One number → f16 bits (RNE). */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]);
}

/** One number → bf16 bits (RNE). */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16Bits(scratchU32[0]);
}

/** A view of `count` u16 values at `bytes`, copying only when misaligned. Little-endian hosts only. */
function u16View(bytes: Uint8Array, count: number): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  return new Uint16Array(bytes.slice(0, count * 2).buffer);
}

function checkLength(bytes: Uint8Array, elementSize: number, count: number | undefined): number {
  const n = count ?? Math.floor(bytes.length / elementSize);
  if (n * elementSize > bytes.length) throw new RangeError(`need ${n * elementSize} bytes, have ${bytes.length}`);
  return n;
}

/** Little-endian f16 bytes → Float32Array (exact; subnormals, inf and NaN preserved). */
export function f16BytesToF32(bytes: Uint8Array, count?: number, out?: Float32Array): Float32Array {
  const n = checkLength(bytes, 2, count);
  const dst = out ?? new Float32Array(n);
  const dstBits = new Uint32Array(dst.buffer, dst.byteOffset, n);
  const table = getHalfTable();
  if (HOST_IS_LITTLE_ENDIAN) {
    const src = u16View(bytes, n);
    for (let i = 0; i < n; i++) dstBits[i] = table[src[i]];
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    for (let i = 0; i < n; i++) dstBits[i] = table[dv.getUint16(i * 2, true)];
  }
  return dst;
}

/** Little-endian bf16 bytes → Float32Array (exact: bf16 is the top half of f32). */
export function bf16BytesToF32(bytes: Uint8Array, count?: number, out?: Float32Array): Float32Array {
  const n = checkLength(bytes, 2, count);
  const dst = out ?? new Float32Array(n);
  const dstBits = new Uint32Array(dst.buffer, dst.byteOffset, n);
  if (HOST_IS_LITTLE_ENDIAN) {
    const src = u16View(bytes, n);
    for (let i = 0; i < n; i++) dstBits[i] = src[i] << 16;
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    for (let i = 0; i < n; i++) dstBits[i] = dv.getUint16(i * 2, true) << 16;
  }
  return dst;
}

/** Little-endian f32 bytes → a fresh Float32Array (a copy, so the file buffer can be released). */
export function f32BytesToF32(bytes: Uint8Array, count?: number, out?: Float32Array): Float32Array {
  const n = checkLength(bytes, 4, count);
  const dst = out ?? new Float32Array(n);
  if (HOST_IS_LITTLE_ENDIAN) {
    new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(bytes.subarray(0, n * 4));
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, n * 4);
    for (let i = 0; i < n; i++) dst[i] = dv.getFloat32(i * 4, true);
  }
  return dst;
}

/** Little-endian f64 bytes → Float32Array, rounding each value to nearest f32. */
export function f64BytesToF32(bytes: Uint8Array, count?: number, out?: Float32Array): Float32Array {
  const n = checkLength(bytes, 8, count);
  const dst = out ?? new Float32Array(n);
  if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % 8 === 0) {
    const src = new Float64Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = src[i];
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, n * 8);
    for (let i = 0; i < n; i++) dst[i] = dv.getFloat64(i * 8, true);
  }
  return dst;
}

/** Float32Array → f16 bits (RNE). `out` may be a view into a file being written. */
export function f32ToF16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length;
  const dst = out ?? new Uint16Array(n);
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) dst[i] = f32BitsToF16Bits(bits[i]);
  return dst;
}

/** Float32Array → bf16 bits (RNE). */
export function f32ToBf16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length;
  const dst = out ?? new Uint16Array(n);
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) dst[i] = f32BitsToBf16Bits(bits[i]);
  return dst;
}

/**
 * The 256 values of an 8-bit float with `e` exponent and `m` mantissa bits (bias 2^(e-1) − 1), as
 * f32 — every one is exact in f32. `fn` ("finite, NaN only"): no infinities, and only all-ones
 * exponent and mantissa is NaN (F8_E4M3, torch.float8_e4m3fn); otherwise IEEE-like (F8_E5M2).
 */
function buildF8Table(e: number, m: number, fn: boolean): Float32Array {
  const table = new Float32Array(256);
  const bias = 2 ** (e - 1) - 1;
  const expMax = 2 ** e - 1;
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >>> m) & expMax;
    const mant = b & ((1 << m) - 1);
    let v: number;
    if (exp === expMax && (fn ? mant === (1 << m) - 1 : true)) v = fn || mant !== 0 ? NaN : sign * Infinity;
    else if (exp === 0)
      v = sign * mant * 2 ** (1 - bias - m); // subnormals (and ±0)
    else v = sign * (1 + mant / 2 ** m) * 2 ** (exp - bias);
    table[b] = v;
  }
  return table;
}

let e4m3Table: Float32Array | null = null;
let e5m2Table: Float32Array | null = null;

/** One F8_E4M3 (e4m3fn: max ±448, no inf, NaN = 0x7f/0xff) byte → number. */
export function f8e4m3ToF32(b: number): number {
  return (e4m3Table ??= buildF8Table(4, 3, true))[b & 0xff];
}

/** One F8_E5M2 byte → number (IEEE-like: the top byte of an f16). */
export function f8e5m2ToF32(b: number): number {
  return (e5m2Table ??= buildF8Table(5, 2, false))[b & 0xff];
}

/** 8-bit float bytes → Float32Array by table lookup (exact). */
function f8BytesToF32(bytes: Uint8Array, table: Float32Array, count?: number): Float32Array {
  const n = checkLength(bytes, 1, count);
  const dst = new Float32Array(n);
  for (let i = 0; i < n; i++) dst[i] = table[bytes[i]];
  return dst;
}

/** The float storage dtypes every loader converts (safetensors spelling). */
export type FloatDtype = "F16" | "BF16" | "F32" | "F64" | "F8_E4M3" | "F8_E5M2";

/** Bytes per element of each float storage dtype. */
export const FLOAT_DTYPE_SIZE: Readonly<Record<FloatDtype, number>> = {
  F16: 2,
  BF16: 2,
  F32: 4,
  F64: 8,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Little-endian bytes of `dtype` → Float32Array of `count` elements. */
export function floatBytesToF32(bytes: Uint8Array, dtype: FloatDtype, count?: number): Float32Array {
  switch (dtype) {
    case "F16":
      return f16BytesToF32(bytes, count);
    case "BF16":
      return bf16BytesToF32(bytes, count);
    case "F32":
      return f32BytesToF32(bytes, count);
    case "F64":
      return f64BytesToF32(bytes, count);
    case "F8_E4M3":
      return f8BytesToF32(bytes, (e4m3Table ??= buildF8Table(4, 3, true)), count);
    case "F8_E5M2":
      return f8BytesToF32(bytes, (e5m2Table ??= buildF8Table(5, 2, false)), count);
  }
}
