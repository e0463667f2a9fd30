import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  bf16BitsToF32,
  bf16BytesToF32,
  f8e4m3ToF32,
  f8e5m2ToF32,
  f16BitsToF32,
  f16BytesToF32,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
  f64BytesToF32,
  floatBytesToF32,
} from "../../src/tensor/dtype.js";

/** Slow, independent decoding straight from the IEEE definition. */
function halfByFormula(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Nearest half by search over all finite positive halves, ties to even bits. */
function halfBySearch(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (halfByFormula(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  const below = lo;
  if (halfByFormula(below) === a || below === 0x7bff) return sign | below;
  const above = below + 1;
  const dl = a - halfByFormula(below);
  const du = halfByFormula(above) - a;
  if (dl < du) return sign | below;
  if (du < dl) return sign | above;
  return sign | (below & 1 ? above : below);
}

const bits32 = new Uint32Array(1);
const f32 = new Float32Array(bits32.buffer);
const fromBits = (b: number): number => {
  bits32[0] = b >>> 0;
  return f32[0];
};

describe("f16", () => {
  test("decodes all 65536 patterns exactly (subnormals, inf, NaN)", () => {
    const bytes = new Uint8Array(65536 * 2);
    for (let h = 0; h < 65536; h++) {
      bytes[2 * h] = h & 0xff;
      bytes[2 * h + 1] = h >>> 8;
    }
    const out = f16BytesToF32(bytes);
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = halfByFormula(h);
      const ok = Number.isNaN(want)
        ? Number.isNaN(out[h]) && Number.isNaN(f16BitsToF32(h))
        : Object.is(out[h], want) && Object.is(f16BitsToF32(h), want);
      if (!ok) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  test("decodes from a misaligned view", () => {
    const bytes = new Uint8Array(5);
    bytes.set([0x00, 0x3c, 0x00, 0xc0], 1); // 1.0, -2.0
    expect([...f16BytesToF32(bytes.subarray(1))]).toEqual([1, -2]);
  });

  test("every half survives f32 → f16 unchanged", () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const x = f16BitsToF32(h);
      const ok = Number.isNaN(x)
        ? (f32ToF16Bits(x) & 0x7c00) === 0x7c00 && (f32ToF16Bits(x) & 0x3ff) !== 0
        : f32ToF16Bits(x) === h;
      if (!ok) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  test("rounds to nearest even, like a search over all halves", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (b) => {
        const x = fromBits(b);
        if (Number.isNaN(x)) {
          const h = f32ToF16Bits(x);
          return (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
        }
        return f32ToF16Bits(x) === halfBySearch(x);
      }),
      { numRuns: 20000 },
    );
    // Concentrated on the range halves can represent, where the rounding actually happens.
    fc.assert(
      fc.property(fc.integer({ min: 0x32f00000, max: 0x47900000 }), fc.boolean(), (b, neg) => {
        const x = fromBits(b) * (neg ? -1 : 1);
        return f32ToF16Bits(x) === halfBySearch(x);
      }),
      { numRuns: 20000 },
    );
    // Exact ties and edges.
    for (const x of [
      65504,
      65519.99,
      65520,
      2 ** -25,
      2 ** -25 * 1.0000001,
      3 * 2 ** -25,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2 ** -14 - 2 ** -25,
      -0,
      1e-10,
    ]) {
      expect(f32ToF16Bits(x)).toBe(halfBySearch(Math.fround(x)));
    }
  });

  test("bulk encoder matches the scalar one", () => {
    const src = Float32Array.from([0, -0, 1, -1.5, 1e9, -1e9, NaN, Infinity, 1e-8, 0.1]);
    const out = f32ToF16(src);
    expect([...out]).toEqual([...src].map((v) => f32ToF16Bits(v)));
  });
});

describe("bf16", () => {
  test("decodes as the upper half of an f32", () => {
    const bytes = Uint8Array.from([0x80, 0x3f, 0x00, 0xc0, 0x80, 0x7f, 0xc0, 0x7f, 0x01, 0x00]);
    const out = bf16BytesToF32(bytes);
    expect(out[0]).toBe(1);
    expect(out[1]).toBe(-2);
    expect(out[2]).toBe(Infinity);
    expect(Number.isNaN(out[3])).toBe(true);
    expect(out[4]).toBe(fromBits(0x00010000)); // subnormal
    expect(bf16BitsToF32(0x3f80)).toBe(1);
  });

  test("rounds to nearest even", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (b) => {
        const x = fromBits(b);
        const got = f32ToBf16Bits(x);
        if (Number.isNaN(x)) return (got & 0x7f80) === 0x7f80 && (got & 0x7f) !== 0;
        const below = b >>> 16;
        const lowBits = b & 0xffff;
        const want = lowBits > 0x8000 || (lowBits === 0x8000 && below & 1) ? below + 1 : below;
        return got === want;
      }),
      { numRuns: 20000 },
    );
    expect(f32ToBf16Bits(Math.fround(3.4e38))).toBe(0x7f80); // rounds up to inf
    expect([...f32ToBf16(Float32Array.from([1, -2]))]).toEqual([0x3f80, 0xc000]);
  });
});

describe("8-bit floats", () => {
  // An independent decoder: assemble the f32 bit pattern by hand (normal) or scale the mantissa (subnormal).
  function byBits(b: number, e: number, m: number): number {
    const bias = 2 ** (e - 1) - 1;
    const exp = (b >>> m) & (2 ** e - 1);
    const mant = b & (2 ** m - 1);
    const sign = b & 0x80 ? -1 : 1;
    if (exp === 0) return sign * mant * 2 ** (1 - bias - m);
    const bits = new Uint32Array([(((b & 0x80) << 24) | ((exp - bias + 127) << 23) | (mant << (23 - m))) >>> 0]);
    return new Float32Array(bits.buffer)[0];
  }
  test("F8_E4M3 (e4m3fn) decodes all 256 patterns exactly: max 448, no inf, NaN only at 0x7f/0xff", () => {
    const all = floatBytesToF32(
      Uint8Array.from({ length: 256 }, (_, i) => i),
      "F8_E4M3",
    );
    for (let b = 0; b < 256; b++) {
      if ((b & 0x7f) === 0x7f) expect(all[b], `0x${b.toString(16)}`).toBeNaN();
      else expect(Object.is(all[b], byBits(b, 4, 3)), `0x${b.toString(16)}: ${all[b]}`).toBe(true);
      expect(f8e4m3ToF32(b)).toEqual(all[b]);
    }
    expect([all[0x7e], all[0xfe], all[0x38], all[0x01], all[0x08]]).toEqual([448, -448, 1, 2 ** -9, 2 ** -6]);
    expect(Object.is(all[0x80], -0)).toBe(true);
    expect(all.some((v) => !Number.isFinite(v) && !Number.isNaN(v))).toBe(false);
  });
  test("F8_E5M2 decodes all 256 patterns exactly: the top byte of an f16", () => {
    const all = floatBytesToF32(
      Uint8Array.from({ length: 256 }, (_, i) => i),
      "F8_E5M2",
    );
    for (let b = 0; b < 256; b++) {
      const viaHalf = f16BitsToF32(b << 8);
      if (Number.isNaN(viaHalf)) expect(all[b]).toBeNaN();
      else expect(Object.is(all[b], viaHalf), `0x${b.toString(16)}`).toBe(true);
      if ((b & 0x7c) !== 0x7c) expect(all[b]).toEqual(byBits(b, 5, 2));
      expect(f8e5m2ToF32(b)).toEqual(all[b]);
    }
    expect([all[0x7b], all[0x7c], all[0xfc], all[0x01]]).toEqual([57344, Infinity, -Infinity, 2 ** -16]);
  });
});

test("f64 bytes round to the nearest f32", () => {
  const src = Float64Array.from([0.1, -1e300, 1 / 3]);
  const bytes = new Uint8Array(src.length * 8 + 3);
  bytes.set(new Uint8Array(src.buffer), 3); // misaligned on purpose
  const out = f64BytesToF32(bytes.subarray(3));
  expect([...out]).toEqual([Math.fround(0.1), -Infinity, Math.fround(1 / 3)]);
});
