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

/**
 * dst[i] = widen(src[i]) for n f16 values, 8 per step as halfToF32 does it (bit for bit, NaN payloads too),
 * without its branches; the subnormals go through an int → float conversion, so no f32 denormal is ever
 * an operand (those take a microcode assist on x86).
 */
export function widenRun(src: usize, dst: usize, n: i32): void {
  const low = i32x4.splat(0x7fff), infBits = i32x4.splat(0x7f800000), bias = i32x4.splat(112 << 23);
  const firstNormal = i32x4.splat(0x400), firstSpecial = i32x4.splat(0x7c00);
  const tiny = f32x4.splat(reinterpret<f32>(0x33800000)); // 2^-24
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), widen4(i32x4.extend_low_i16x8_u(h), low, infBits, bias, firstNormal, firstSpecial, tiny));
    v128.store(dst + (<usize>i << 2), widen4(i32x4.extend_high_i16x8_u(h), low, infBits, bias, firstNormal, firstSpecial, tiny), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), halfToF32(<u32>load<u16>(src + (<usize>i << 1))));
}

// @ts-ignore: decorator
@inline function widen4(h: v128, low: v128, infBits: v128, bias: v128, firstNormal: v128, firstSpecial: v128, tiny: v128): v128 {
  const em = v128.and(h, low);
  const shifted = i32x4.shl(em, 13);
  const normal = i32x4.add(shifted, bias); // exponent rebiased (15 → 127)
  const sub = f32x4.mul(f32x4.convert_i32x4_s(em), tiny); // exact: m·2^-24
  const special = v128.or(shifted, infBits); // ±inf, NaN with its payload
  const r = v128.bitselect(sub, v128.bitselect(special, normal, i32x4.ge_s(em, firstSpecial)), i32x4.lt_s(em, firstNormal));
  return v128.or(r, i32x4.shl(v128.xor(h, em), 16));
}
