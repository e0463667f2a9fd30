// Shared helpers for every kernel: the fused multiply-add that differs between the two builds, thread
// slicing, partial-vector loads/stores and the vector math (exp and the activations).
//
// Memory contract with the JS side: every pointer is a byte offset into the imported linear memory.
// Kernels may read up to 64 bytes past the end of an input (the tail lanes of a last, partial vector;
// their results are discarded) — the JS allocator keeps a guard so those reads never leave memory.

/** True in the relaxed-SIMD build (compiled with `--enable relaxed-simd`). */
export const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD;

/** a * b + c. One fused instruction in the relaxed build (where the engine has FMA), mul + add otherwise. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** First index of thread `tid`'s share of `total` items (the last thread's end is `total`). */
// @ts-ignore: decorator
@inline export function sliceBegin(total: i32, tid: i32, nt: i32): i32 {
  return <i32>((<i64>total * <i64>tid) / <i64>nt);
}

// @ts-ignore: decorator
@inline export function splat(x: f32): v128 {
  return f32x4.splat(x);
}

/**
 * n floats of an input row into d from its column `first`: a plain copy of the row at src, or with `up` of
 * that row upsampled ×2 nearest (column j reads src[j >> 1]), so an upsampled tensor never has to exist.
 */
export function copyRow(d: usize, src: usize, first: i32, n: i32, up: bool): void {
  if (!up) {
    memory.copy(d, src + (<usize>first << 2), <usize>n << 2);
    return;
  }
  for (let k = 0; k < n; k++) store<f32>(d + (<usize>k << 2), load<f32>(src + (<usize>((first + k) >> 1) << 2)));
}

/** Stores the first n (0..4) lanes of v at p. */
// @ts-ignore: decorator
@inline export function storePartial(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
  } else if (n > 0) {
    v128.store32_lane(p, v, 0);
    if (n > 1) v128.store32_lane(p, v, 1, 4);
    if (n > 2) v128.store32_lane(p, v, 2, 8);
  }
}

/** Loads the first n (0..4) lanes at p; the other lanes are zero. Never reads past p + 4n. */
// @ts-ignore: decorator
@inline export function loadPartial(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  if (n > 0) v = v128.load32_lane(p, v, 0);
  if (n > 1) v = v128.load32_lane(p, v, 1, 4);
  if (n > 2) v = v128.load32_lane(p, v, 2, 8);
  return v;
}

/** Horizontal sum of the four lanes. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, f32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(s, f32x4.shuffle(s, s, 1, 0, 3, 2)), 0);
}

/** Horizontal max of the four lanes. */
// @ts-ignore: decorator
@inline export function hmax(v: v128): f32 {
  const s = f32x4.pmax(v, f32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.pmax(s, f32x4.shuffle(s, s, 1, 0, 3, 2)), 0);
}

/**
 * [sum(a), sum(b), sum(c), sum(d)]: reduces four dot-product accumulators into one vector.
 */
// @ts-ignore: decorator
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(f32x4.shuffle(a, b, 0, 4, 1, 5), f32x4.shuffle(a, b, 2, 6, 3, 7)); // a0+a2 b0+b2 a1+a3 b1+b3
  const cd = f32x4.add(f32x4.shuffle(c, d, 0, 4, 1, 5), f32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(f32x4.shuffle(ab, cd, 0, 1, 4, 5), f32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

// exp: x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial (truncation error
// r^8/8! < 6e-9, below f32 rounding), 2^n built in the exponent bits. Inputs are clamped to
// [-87.33, 88] so 2^n stays a normal float: exp(-inf) gives ~1e-38 instead of 0, exp(+inf) ~1.6e38.
const LOG2E: f32 = 1.4426950408889634;
const LN2_HI: f32 = 0.693359375; // 9 significant bits: n * LN2_HI is exact for |n| <= 128
const LN2_LO: f32 = -2.12194440054690583e-4; // ln2 - LN2_HI

// @ts-ignore: decorator
@inline export function vexp(x: v128): v128 {
  x = f32x4.pmax(f32x4.pmin(x, splat(88.0)), splat(-87.33));
  const n = f32x4.nearest(f32x4.mul(x, splat(LOG2E)));
  let r = f32x4.sub(x, f32x4.mul(n, splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, splat(LN2_LO)));
  let p = madd(splat(<f32>(1.0 / 5040.0)), r, splat(<f32>(1.0 / 720.0)));
  p = madd(p, r, splat(<f32>(1.0 / 120.0)));
  p = madd(p, r, splat(<f32>(1.0 / 24.0)));
  p = madd(p, r, splat(<f32>(1.0 / 6.0)));
  p = madd(p, r, splat(0.5));
  p = madd(p, r, splat(1.0));
  p = madd(p, r, splat(1.0));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

/** e^x with IEEE saturation: +inf above 88.72, 0 below -87.33 (where vexp's clamp would not be exact). */
// @ts-ignore: decorator
@inline export function vexpSat(x: v128): v128 {
  const e = vexp(x);
  const big = v128.bitselect(splat(Infinity), e, f32x4.gt(x, splat(88.72283)));
  return v128.andnot(big, f32x4.lt(x, splat(-87.33)));
}

export const ACT_NONE = 0;
export const ACT_SILU = 1;
export const ACT_MISH = 2;
export const ACT_GELU = 3;
export const ACT_RELU = 4;

// @ts-ignore: decorator
@inline export function vsilu(x: v128): v128 {
  return f32x4.div(x, f32x4.add(splat(1.0), vexpSat(f32x4.neg(x))));
}

// Mish: x·tanh(softplus(x)). With u = e^x, tanh(log(1+u)) = u(u+2) / (u(u+2) + 2) exactly, which has no
// cancellation for very negative x. Above 20 PyTorch's softplus is linear, and tanh(x) rounds to 1.
// @ts-ignore: decorator
@inline export function vmish(x: v128): v128 {
  const u = vexpSat(f32x4.pmin(x, splat(20.0)));
  const n = f32x4.mul(u, f32x4.add(u, splat(2.0)));
  const y = f32x4.mul(x, f32x4.div(n, f32x4.add(n, splat(2.0))));
  return v128.bitselect(x, y, f32x4.gt(x, splat(20.0)));
}

// GELU, exact erf form: 0.5·x·(1 + erf(x/√2)). erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2), is the same
// Chebyshev fit (fractional error < 1.2e-7) as the reference kernels; computing erfc rather than 1 - erf
// keeps full relative precision in the negative tail where the result is tiny. There, exp's argument is
// large (-z² ≈ -30 at x = -8) and rounding it to f32 alone would cost ~2e-6 relative, so z² = x²/2 is
// split exactly: x = xh + xl with 12-bit halves, x²/2 = xh²/2 + (xh·xl + xl²/2), all products exact, and
// exp(-xh²/2) (an exact argument) times exp(P - xh·xl - xl²/2) (a small one).
// @ts-ignore: decorator
@inline export function vgelu(x: v128): v128 {
  const z = f32x4.mul(f32x4.abs(x), splat(<f32>0.7071067811865476));
  const t = f32x4.div(splat(1.0), madd(splat(0.5), z, splat(1.0)));
  let p = madd(splat(0.17087277), t, splat(-0.82215223));
  p = madd(p, t, splat(1.48851587));
  p = madd(p, t, splat(-1.13520398));
  p = madd(p, t, splat(0.27886807));
  p = madd(p, t, splat(-0.18628806));
  p = madd(p, t, splat(0.09678418));
  p = madd(p, t, splat(0.37409196));
  p = madd(p, t, splat(1.00002368));
  p = madd(p, t, splat(-1.26551223));
  const xh = v128.and(x, i32x4.splat(0xfffff000));
  const xl = f32x4.sub(x, xh);
  const big = f32x4.mul(f32x4.mul(xh, xh), splat(0.5));
  const small = f32x4.add(f32x4.mul(xh, xl), f32x4.mul(f32x4.mul(xl, xl), splat(0.5)));
  const r = f32x4.mul(f32x4.mul(t, vexpSat(f32x4.neg(big))), vexp(f32x4.sub(p, small))); // erfc(|x|/√2)
  const hx = f32x4.mul(splat(0.5), x);
  const pos = f32x4.mul(hx, f32x4.sub(splat(2.0), r));
  const neg = f32x4.mul(hx, r);
  return v128.bitselect(pos, neg, f32x4.ge(x, splat(0.0)));
}

// x > 0 ? x : 0 (NaN and -0 give +0, as the reference does).
// @ts-ignore: decorator
@inline export function vrelu(x: v128): v128 {
  return v128.and(x, f32x4.gt(x, splat(0.0)));
}

// @ts-ignore: decorator
@inline export function vact(x: v128, act: i32): v128 {
  if (act == ACT_SILU) return vsilu(x);
  if (act == ACT_MISH) return vmish(x);
  if (act == ACT_GELU) return vgelu(x);
  if (act == ACT_RELU) return vrelu(x);
  return x;
}
