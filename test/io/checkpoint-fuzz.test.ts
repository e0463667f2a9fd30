import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import { readFlaxStateDict } from "../../src/io/flax.js";
import { decodeMsgpack } from "../../src/io/msgpack.js";
import { readTorchCheckpoint } from "../../src/io/torch-checkpoint.js";
import { openZip } from "../../src/io/zip.js";

const fixture = (p: string) => new Uint8Array(readFileSync(`test/fixtures/${p}`));

function onlyOurErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof AutoencoderKLError)) throw e;
  }
}

const flips = (max: number) =>
  fc.array(fc.tuple(fc.nat({ max: max - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
/** Run `fn` on `bytes` with edits applied in place, then restore (no multi-megabyte copy per run). */
function withEdits(bytes: Uint8Array, edits: [number, number][], fn: (b: Uint8Array) => void): void {
  const saved = edits.map(([p]) => bytes[p]);
  for (const [p, v] of edits) bytes[p] = v;
  try {
    fn(bytes);
  } finally {
    for (let i = edits.length - 1; i >= 0; i--) bytes[edits[i][0]] = saved[i];
  }
}

describe("checkpoint parsers under mutation: only AutoencoderKLError escapes", () => {
  test("torch legacy pickles (the pickled part)", () => {
    const legacy = fixture("models/tiny-ckpt/tiny-legacy.ckpt");
    fc.assert(
      fc.property(flips(20_000), fc.nat({ max: 30_000 }), (edits, cut) => {
        withEdits(legacy, edits, (b) =>
          onlyOurErrors(() => {
            const c = readTorchCheckpoint(b, "fuzz");
            for (const name of [...c.tensors.keys()].slice(0, 3)) c.load(name);
          }),
        );
        onlyOurErrors(() => readTorchCheckpoint(legacy.subarray(0, cut), "fuzz"));
      }),
      { numRuns: 600 }, // a mutated STOP sends the unpickler through megabytes of raw storage: slow-ish runs
    );
  });

  test("torch zips (directory and data.pkl)", () => {
    const bytes = fixture("models/tiny-ckpt/tiny.ckpt");
    const zip = openZip(bytes, "z");
    const pkl = zip.entries.get("tiny/data.pkl")!;
    const cdStart = bytes.length - 30_000;
    fc.assert(
      fc.property(flips(pkl.size), flips(30_000), fc.boolean(), (inPkl, inDir, which) => {
        const edits: [number, number][] = which
          ? inPkl.map(([p, v]) => [pkl.dataStart + p, v])
          : inDir.map(([p, v]) => [cdStart + p, v]);
        withEdits(bytes, edits, (b) =>
          onlyOurErrors(() => {
            const c = readTorchCheckpoint(b, "fuzz");
            for (const name of [...c.tensors.keys()].slice(0, 3)) c.load(name);
          }),
        );
      }),
      { numRuns: 1000 },
    );
  });

  test("msgpack and flax trees", () => {
    // A small Flax-shaped tree: {encoder: {conv_in: {bias: ndarray[2], kernel: ndarray[1,1,1,2]}}}.
    const str = (t: string) => [0xa0 | t.length, ...new TextEncoder().encode(t)];
    const arr = (shape: number[]) => {
      const payload = [
        0x93,
        0x90 | shape.length,
        ...shape,
        ...str("float32"),
        0xc4,
        8,
        0,
        0,
        0x80,
        0x3f,
        0,
        0,
        0,
        0x40,
      ];
      return [0xc7, payload.length, 1, ...payload];
    };
    const seed = Uint8Array.from([
      0x81,
      ...str("encoder"),
      0x81,
      ...str("conv_in"),
      0x82,
      ...str("bias"),
      ...arr([2]),
      ...str("kernel"),
      ...arr([1, 1, 1, 2]),
    ]);
    expect(readFlaxStateDict(seed, "seed").get("encoder.conv_in.weight")!.shape).toEqual([2, 1, 1, 1]);
    fc.assert(
      fc.property(flips(seed.length), fc.nat({ max: seed.length }), (edits, cut) => {
        withEdits(seed, edits, (b) => {
          onlyOurErrors(() => readFlaxStateDict(b, "fuzz"));
          onlyOurErrors(() => decodeMsgpack(b, "fuzz"));
        });
        onlyOurErrors(() => readFlaxStateDict(seed.subarray(0, cut), "fuzz"));
      }),
      { numRuns: 3000 },
    );
  });
});
