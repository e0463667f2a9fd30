// Deterministic test data: one xorshift32 stream, the same on every platform.

/** Uniform values in [0, 1) from `seed` (xorshift32). */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** The stream with integer and array helpers: uniform integers in [lo, hi] and f32 arrays in [lo, hi). */
export function generator(seed: number) {
  const next = xorshift32(seed);
  return {
    next,
    int: (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1)),
    data: (n: number, lo = -1, hi = 1): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * next()),
  };
}
