/**
 * Seeded standard-normal noise: xoshiro128** seeded through splitmix32, Box–Muller in float64.
 * Deterministic across platforms and backends (pure integer arithmetic + Math.log/cos/sin); it does not
 * reproduce torch.randn's stream — pass `noise` explicitly to match a PyTorch run bit for bit.
 */
export function randn(length: number, seed: number): Float32Array {
  let s = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
  const next32 = () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = next32(),
    b = next32(),
    c = next32(),
    d = next32();
  const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));
  const xoshiro = () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r;
  };
  // Uniform in (0, 1] with 53 bits, so log() never sees 0.
  const uniform = () => ((xoshiro() >>> 5) * 67108864 + (xoshiro() >>> 6) + 1) / 9007199254740992;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(theta);
    if (i + 1 < length) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}
