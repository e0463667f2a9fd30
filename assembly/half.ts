// f16 weights in linear memory: the pack kernels widen them as they copy them into their f32 panels, so a
// model keeps half the bytes resident and computes exactly what it computes from the same values as f32.

/**
 * f16 bits → f32, exact for all 65536 values: ±0, subnormals (m·2^-24 is exact in f32), ±inf, and NaNs
 * with their payload kept (the same bit patterns as src/tensor/dtype.ts gives).
 */
// @ts-ignore: decorator
@inline export function halfToF32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  let bits: u32;
  if (exp == 0x1f) bits = 0x7f800000 | (mant << 13);
  else if (exp != 0) bits = ((exp + 112) << 23) | (mant << 13);
  else bits = reinterpret<u32>(<f32>mant * reinterpret<f32>(0x33800000)); // 2^-24
  return reinterpret<f32>(sign | bits);
}

/** Element i of a weight array at `base`: f16 bits when `half`, else f32. */
// @ts-ignore: decorator
@inline export function loadWeight(base: usize, i: usize, half: bool): f32 {
  return half ? halfToF32(<u32>load<u16>(base + (i << 1))) : load<f32>(base + (i << 2));
}

/** out[i] = widen(src[i]) for `length` f16 values (reading a half buffer back; the exhaustive test). */
export function widenHalf(src: usize, out: usize, length: i32, tid: i32, nt: i32): void {
  const i0 = <i32>((<i64>length * <i64>tid) / <i64>nt), i1 = <i32>((<i64>length * <i64>(tid + 1)) / <i64>nt);
  for (let i = i0; i < i1; i++) store<f32>(out + (<usize>i << 2), loadWeight(src, <usize>i, true));
}
