import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from "../../src/io/safetensors.js";
import { Tensor } from "../../src/tensor/tensor.js";

/** Valid seeds: several dtypes, an empty tensor, a scalar, metadata, and a file with foreign dtypes. */
function seeds(): Uint8Array[] {
  const t = (n: number, shape: number[]) =>
    new Tensor(
      Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3),
      shape,
    );
  const tensors = { "a.weight": t(6, [2, 3]), "b.bias": t(4, [4]), empty: t(0, [0, 5]), scalar: t(1, []) };
  const header = (h: string, dataLength: number) => {
    const hb = new TextEncoder().encode(h);
    const out = new Uint8Array(8 + hb.length + dataLength);
    new DataView(out.buffer).setUint32(0, hb.length, true);
    out.set(hb, 8);
    for (let i = 8 + hb.length; i < out.length; i++) out[i] = (i * 37) & 0xff;
    return out;
  };
  return [
    writeSafetensors(tensors, { format: "pt" }),
    writeSafetensors(tensors, undefined, { dtype: "F16" }),
    writeSafetensors(tensors, { a: "b" }, { dtype: "BF16" }),
    header(
      `{"ids":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]},"f":{"dtype":"F64","shape":[2],"data_offsets":[16,32]},` +
        `"h":{"dtype":"F16","shape":[3],"data_offsets":[32,38]},"__metadata__":{"k":"v"}}`,
      38,
    ),
  ];
}

/** Only AutoencoderKLError may escape; a success must be self-consistent and bounded by the input. */
function check(bytes: Uint8Array): void {
  try {
    readSafetensorsHeader(bytes, "fuzz");
    const { tensors, metadata } = readSafetensors(bytes, "fuzz", { filter: (_, e) => e.dtype !== "I64" });
    let total = 0;
    for (const [, t] of tensors) {
      expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      total += t.data.byteLength;
    }
    expect(total).toBeLessThanOrEqual(bytes.length * 4); // f16 → f32 at most doubles; never driven by the header alone
    expect(typeof metadata).toBe("object");
  } catch (e) {
    if (!(e instanceof AutoencoderKLError)) throw e;
    expect(e.message.startsWith("fuzz: ")).toBe(true);
  }
}

const withLength = (header: string, data: Uint8Array, declared?: number): Uint8Array => {
  const hb = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + hb.length + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, declared ?? hb.length, true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
};
const split = (bytes: Uint8Array) => {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  return { header: new TextDecoder().decode(bytes.subarray(8, 8 + n)), data: bytes.subarray(8 + n) };
};

const SEEDS = seeds();
const seedArb = fc.integer({ min: 0, max: SEEDS.length - 1 }).map((i) => SEEDS[i]);

/** Values to splice into the header in place of a number or string. */
const replacement = fc.oneof(
  fc.constantFrom(
    "0",
    "1",
    "-1",
    "-0",
    "1.5",
    "1e2",
    "1E400",
    "9007199254740992",
    "9007199254740993",
    "18446744073709551616",
    "4294967296",
    "null",
    "true",
    '"x"',
    "[]",
    "{}",
    "[0]",
    "[0,0,0]",
    '"F32"',
    '"F16"',
    '"BF16"',
    '"I64"',
    '"F4"',
    '"F33"',
    '"__proto__"',
    '"constructor"',
    '"\\ud800"',
    '"\\u0000"',
    "[[[[[]]]]]",
    '{"a":1,"a":2}',
  ),
  fc.integer({ min: -10, max: 1 << 30 }).map(String),
  fc.string({ maxLength: 6 }).map((s) => JSON.stringify(s)),
);

const RUNS = { flips: 8000, truncate: 2000, tokens: 6000, structure: 2000 };

describe("readSafetensors under mutation: only AutoencoderKLError escapes", () => {
  test("seeds are valid", () => {
    for (const s of SEEDS)
      expect(readSafetensors(s, "seed", { filter: (_, e) => e.dtype !== "I64" }).tensors.size).toBeGreaterThan(0);
  });

  test("byte flips (header-biased)", () => {
    fc.assert(
      fc.property(
        seedArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), { minLength: 1, maxLength: 6 }),
        (seed, flips) => {
          const b = seed.slice();
          const headerEnd = Math.min(b.length, 8 + new DataView(b.buffer).getUint32(0, true));
          for (const [pos, val, inHeader] of flips) b[inHeader ? pos % headerEnd : pos % b.length] = val;
          check(b);
        },
      ),
      { numRuns: RUNS.flips },
    );
  });

  test("truncation and extension", () => {
    fc.assert(
      fc.property(seedArb, fc.nat(), fc.integer({ min: -16, max: 16 }), (seed, cut, extra) => {
        if (extra >= 0) {
          const b = new Uint8Array(seed.length + extra);
          b.set(seed);
          check(b);
        }
        check(seed.subarray(0, cut % (seed.length + 1)));
      }),
      { numRuns: RUNS.truncate },
    );
  });

  test("header token edits: numbers, strings, dtypes, shapes, offsets", () => {
    fc.assert(
      fc.property(seedArb, fc.nat(), replacement, fc.boolean(), (seed, which, value, keepLength) => {
        const { header, data } = split(seed);
        const tokens = [...header.matchAll(/"(?:[^"\\]|\\.)*"|-?\d+/g)];
        const m = tokens[which % tokens.length];
        const edited = header.slice(0, m.index) + value + header.slice(m.index! + m[0].length);
        check(withLength(edited, data, keepLength ? new TextEncoder().encode(header).length : undefined));
      }),
      { numRuns: RUNS.tokens },
    );
  });

  test("structural edits: duplicate entries, dropped fields, length prefix, huge counts", () => {
    const edit = fc.oneof(
      // duplicate the first tensor entry under the same name
      fc.constant((h: string) => {
        const m = /"([^"]+)":\{"dtype"[^}]*\}/.exec(h);
        return m ? h.replace("{", `{${m[0]},`) : h;
      }),
      // drop a field
      fc
        .constantFrom("dtype", "shape", "data_offsets")
        .map((f) => (h: string) => h.replace(new RegExp(`"${f}":(\\[[^\\]]*\\]|"[^"]*"),?`), "")),
      // swap offsets around
      fc.constant((h: string) => h.replace(/"data_offsets":\[(\d+),(\d+)\]/, '"data_offsets":[$2,$1]')),
      // enormous shape
      fc.constant((h: string) =>
        h.replace(/"shape":\[[^\]]*\]/, '"shape":[4294967296,4294967296,4294967296,4294967296]'),
      ),
      // trailing garbage / whitespace
      fc.constantFrom(" ", "\n", "\0", "}", ",", "x").map((s) => (h: string) => h + s),
      // wrap in an array
      fc.constant((h: string) => `[${h}]`),
    );
    fc.assert(
      fc.property(
        seedArb,
        edit,
        fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { freq: 4 }),
        (seed, f, declared) => {
          const { header, data } = split(seed);
          const b = withLength(f(header), data);
          if (declared !== null) new DataView(b.buffer).setBigUint64(0, declared, true);
          check(b);
        },
      ),
      { numRuns: RUNS.structure },
    );
  });

  test("run count meets the 10,000-mutation floor", () => {
    expect(Object.values(RUNS).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(10_000);
  });
});
