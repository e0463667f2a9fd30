import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import {
  readSafetensors,
  readSafetensorsHeader,
  readSafetensorsTensor,
  writeSafetensors,
} from "../../src/io/safetensors.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../../src/tensor/dtype.js";
import { Tensor } from "../../src/tensor/tensor.js";

const fixture = (p: string) => new Uint8Array(readFileSync(new URL(`../fixtures/${p}`, import.meta.url)));

/** A file from a header string (padded as given) and `dataLength` zero bytes of data. */
function file(header: string, dataLength: number, declaredLength?: number): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + dataLength);
  new DataView(out.buffer).setUint32(0, declaredLength ?? h.length, true);
  out.set(h, 8);
  return out;
}

/** Asserts an AutoencoderKLError whose message names the source and contains every fragment. */
function rejects(fn: () => unknown, ...fragments: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AutoencoderKLError);
  const msg = (err as Error).message;
  expect(msg.startsWith("bad.safetensors: ")).toBe(true);
  for (const f of fragments) expect(msg).toContain(f);
}
const read = (bytes: Uint8Array) => () => readSafetensors(bytes, "bad.safetensors");

describe("round trip", () => {
  const a = new Tensor(Float32Array.from([0, -0, 1.5, -2.25, 65504, 1e-7, 3.14159, -1e4, 0.1, 7, 8, 9]), [2, 3, 2]);
  const b = new Tensor(Float32Array.from([42]), []);
  const c = new Tensor(new Float32Array(0), [0, 4]);

  test("F32 is exact, with metadata and names in sorted order", () => {
    const bytes = writeSafetensors(
      { "z.weight": a, "a.bias": b, "m.empty": c },
      { format: "pt", note: 'quote " here' },
    );
    const headerLength = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLength % 8).toBe(0);
    const header = readSafetensorsHeader(bytes, "rt");
    expect(header.entries.map((e) => e.name)).toEqual(["a.bias", "m.empty", "z.weight"]);
    expect(header.entries.map((e) => e.dataOffsets)).toEqual([
      [0, 4],
      [4, 4],
      [4, 52],
    ]);
    const { metadata, tensors } = readSafetensors(bytes, "rt");
    expect({ ...metadata }).toEqual({ format: "pt", note: 'quote " here' });
    expect(tensors.get("z.weight")).toEqual(a);
    expect(tensors.get("a.bias")).toEqual(b);
    expect(tensors.get("m.empty")!.shape).toEqual([0, 4]);
    // A Map input gives the same bytes as a record.
    expect(
      writeSafetensors(
        new Map([
          ["m.empty", c],
          ["a.bias", b],
          ["z.weight", a],
        ]),
        { format: "pt", note: 'quote " here' },
      ),
    ).toEqual(bytes);
  });

  test("F16 and BF16 round to nearest even and read back", () => {
    for (const dtype of ["F16", "BF16"] as const) {
      const bytes = writeSafetensors({ a }, undefined, { dtype });
      const header = readSafetensorsHeader(bytes, "rt");
      expect(header.entries[0].dtype).toBe(dtype);
      expect(header.entries[0].end - header.entries[0].start).toBe(a.data.length * 2);
      const got = readSafetensors(bytes, "rt").tensors.get("a")!;
      expect(got.shape).toEqual(a.shape);
      const enc = dtype === "F16" ? f32ToF16Bits : f32ToBf16Bits;
      const dv = new DataView(bytes.buffer, header.entries[0].start);
      for (let i = 0; i < a.data.length; i++) expect(dv.getUint16(2 * i, true)).toBe(enc(a.data[i]));
      for (let i = 0; i < a.data.length; i++) {
        const tol = Math.abs(a.data[i]) * (dtype === "F16" ? 2 ** -11 : 2 ** -8) + (dtype === "F16" ? 2 ** -25 : 0);
        expect(Math.abs(got.data[i] - a.data[i])).toBeLessThanOrEqual(tol);
      }
    }
  });

  test("integer-like names keep sorted header order", () => {
    const t = new Tensor(Float32Array.from([1]), [1]);
    const bytes = writeSafetensors({ b: t, "10": t, "9": t, __proto__x: t });
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + new DataView(bytes.buffer).getUint32(0, true)));
    expect(text.indexOf('"10"')).toBeLessThan(text.indexOf('"9"'));
    expect(text.indexOf('"9"')).toBeLessThan(text.indexOf('"__proto__x"'));
    expect(text.indexOf('"__proto__x"')).toBeLessThan(text.indexOf('"b"'));
  });

  test("empty file matches the reference layout", () => {
    expect([...writeSafetensors({})]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    expect(readSafetensors(writeSafetensors({})).tensors.size).toBe(0);
  });

  test("writer rejects bad input", () => {
    expect(() => writeSafetensors({ x: { data: [1], shape: [1] } as unknown as Tensor })).toThrow(AutoencoderKLError);
    expect(() => writeSafetensors({ __metadata__: new Tensor([1], [1]) })).toThrow(/reserved/);
    expect(() => writeSafetensors({ ["a\ud800"]: new Tensor([1], [1]) })).toThrow(/lone surrogate/);
    expect(
      readSafetensors(writeSafetensors({ ["emoji \ud83d\ude00"]: new Tensor([1], [1]) })).tensors.has(
        "emoji \ud83d\ude00",
      ),
    ).toBe(true);
    expect(() => writeSafetensors({}, { a: 1 } as unknown as Record<string, string>)).toThrow(/metadata "a"/);
    expect(() => writeSafetensors({}, undefined, { dtype: "I8" as "F32" })).toThrow(AutoencoderKLError);
  });
});

describe("fixtures", () => {
  const fp32 = readSafetensors(fixture("models/sdlike/diffusion_pytorch_model.safetensors"), "fp32");

  test("fp16 and bf16 variants are the fp32 weights rounded to nearest even", () => {
    for (const [variant, enc] of [
      ["fp16", f32ToF16Bits],
      ["bf16", f32ToBf16Bits],
    ] as const) {
      const bytes = fixture(`models/sdlike/diffusion_pytorch_model.${variant}.safetensors`);
      const header = readSafetensorsHeader(bytes, variant);
      const { tensors } = readSafetensors(bytes, variant);
      expect([...tensors.keys()].sort()).toEqual([...fp32.tensors.keys()].sort());
      for (const e of header.entries) {
        const ref = fp32.tensors.get(e.name)!;
        expect(e.shape).toEqual(ref.shape);
        const dv = new DataView(bytes.buffer, bytes.byteOffset + e.start, e.end - e.start);
        for (let i = 0; i < ref.data.length; i++) {
          if (dv.getUint16(2 * i, true) !== enc(ref.data[i])) throw new Error(`${variant} ${e.name}[${i}]`);
        }
      }
    }
  });

  test("writing the fp32 weights as F16 reproduces the fp16 file's tensor bytes", () => {
    const ours = writeSafetensors(fp32.tensors, { format: "pt" }, { dtype: "F16" });
    const mine = readSafetensorsHeader(ours, "mine");
    const theirsBytes = fixture("models/sdlike/diffusion_pytorch_model.fp16.safetensors");
    const theirs = readSafetensorsHeader(theirsBytes, "theirs");
    const byName = new Map(theirs.entries.map((e) => [e.name, e]));
    for (const e of mine.entries) {
      const t = byName.get(e.name)!;
      expect(Buffer.from(ours.subarray(e.start, e.end)).equals(theirsBytes.subarray(t.start, t.end)), e.name).toBe(
        true,
      );
    }
  });

  test("a whole SD checkpoint reads with a filter that skips its int64 buffers", () => {
    const bytes = fixture("models/sdlike-single-file.safetensors");
    expect(read(bytes)).toThrow(/I64 cannot be loaded as float32/);
    const { tensors } = readSafetensors(bytes, "sd", { filter: (name) => name.startsWith("first_stage_model.") });
    expect(tensors.size).toBeGreaterThan(100);
    for (const k of tensors.keys()) expect(k.startsWith("first_stage_model.")).toBe(true);
    const header = readSafetensorsHeader(bytes, "sd");
    const ids = header.entries.find((e) => e.dtype === "I64")!;
    expect(() => readSafetensorsTensor(bytes, ids, "sd")).toThrow(/I64/);
  });
});

describe("rejections name the file, the tensor and the rule", () => {
  const good = (name = "w") => `{"${name}":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`;

  test("valid baseline", () => {
    expect(readSafetensors(file(good(), 8)).tensors.get("w")!.shape).toEqual([2]);
  });
  test("file shorter than 8 bytes", () => rejects(read(new Uint8Array(5)), "5 bytes", "8-byte"));
  test("header length over 100 MB", () => {
    rejects(read(file(good(), 8, 100_000_001)), "100000001", "limit");
    const f = file(good(), 8);
    new DataView(f.buffer).setUint32(4, 1, true);
    rejects(read(f), String(2 ** 32 + good().length), "limit");
  });
  test("header length past the end of the file", () => rejects(read(file(good(), 8, 4000)), "4000", "past the end"));
  test("header not UTF-8", () => {
    const f = file(good(), 8);
    f[10] = 0xff;
    rejects(read(f), "UTF-8");
  });
  test("header not a JSON object", () => {
    rejects(read(file("[1,2]   ", 0)), "JSON object");
    rejects(read(file('x{"w":1}', 0)), "starting with '{'", "not a safetensors file");
    rejects(read(file('{"w":{}}x', 0)), "trailing characters");
    rejects(read(file('{"w":{},}', 0)), "not valid JSON");
    rejects(read(file('{"a":"\\ud800"}', 0)), "lone surrogate");
    rejects(read(file('{"a":"x\ny"}', 0)), "control character");
    rejects(read(file('{"a":' + "[".repeat(100) + "]".repeat(100) + "}", 0)), "nesting");
  });
  test("duplicate tensor names (JSON.parse would keep the last)", () =>
    rejects(
      read(
        file(
          `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`,
          16,
        ),
      ),
      'duplicate key "w"',
    ));
  test("duplicate field inside a tensor", () =>
    rejects(
      read(file(`{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8)),
      'duplicate key "dtype"',
    ));
  test("__metadata__ must map strings to strings", () => {
    rejects(read(file(`{"__metadata__":{"format":1}}`, 0)), '__metadata__ "format"', "string");
    rejects(read(file(`{"__metadata__":["x"]}`, 0)), "__metadata__ must be an object");
    expect({ ...readSafetensors(file(`{"__metadata__":{"__proto__":"x"}}`, 0)).metadata }).toEqual({
      ["__proto__"]: "x",
    });
  });
  test("tensor entry not an object", () => rejects(read(file(`{"w":[1]}`, 0)), 'tensor "w"', "expected an object"));
  test("dtype missing or unknown", () => {
    rejects(read(file(`{"w":{"shape":[2],"data_offsets":[0,8]}}`, 8)), 'tensor "w"', "dtype must be a string");
    rejects(
      read(file(`{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, 8)),
      'tensor "w"',
      'unknown dtype "F33"',
    );
  });
  test("shape entries must be non-negative integers", () => {
    for (const s of ["-2", "2.0", "2e0", "1.5", '"2"', "9007199254740993", "null"]) {
      rejects(read(file(`{"w":{"dtype":"F32","shape":[${s}],"data_offsets":[0,8]}}`, 8)), 'tensor "w"', "shape[0]");
    }
    rejects(
      read(file(`{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, 8)),
      'tensor "w"',
      "shape must be an array",
    );
  });
  test("shape product overflowing the data section", () =>
    rejects(
      read(file(`{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, 8)),
      'tensor "w"',
      "needs more bytes",
    ));
  test("data_offsets must be two non-negative integers", () => {
    rejects(read(file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}`, 8)), 'tensor "w"', "[begin, end]");
    rejects(
      read(file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}`, 8)),
      'tensor "w"',
      "non-negative integers",
    );
    rejects(
      read(file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[-0,8]}}`, 8)),
      'tensor "w"',
      "non-negative integers",
    );
  });
  test("begin after end", () =>
    rejects(read(file(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, 8)), 'tensor "w"', "begin after end"));
  test("end past the data section", () =>
    rejects(read(file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 8)), 'tensor "w"', "run past"));
  test("size must be product(shape) × dtype size", () =>
    rejects(
      read(file(`{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8)),
      'tensor "w"',
      "needs 4 bytes",
      "span 8",
    ));
  test("sub-byte dtypes must fill whole bytes", () =>
    rejects(read(file(`{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2)), 'tensor "w"', "whole bytes"));
  test("gaps between tensors", () =>
    rejects(
      read(
        file(
          `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`,
          12,
        ),
      ),
      'tensor "b"',
      "gap",
      'tensor "a"',
    ));
  test("gap at the start", () =>
    rejects(
      read(file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8)),
      'tensor "a"',
      "gap",
      "start of the data section",
    ));
  test("overlapping tensors", () =>
    rejects(
      read(
        file(
          `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
          8,
        ),
      ),
      "overlap",
    ));
  test("data section not fully covered", () => rejects(read(file(good(), 12)), "cover 8 bytes", "has 12"));
  test("non-float dtypes are refused by name unless filtered out", () => {
    const f = file(
      `{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`,
      12,
    );
    rejects(read(f), 'tensor "ids"', "I64");
    const { tensors } = readSafetensors(f, "ok", { filter: (n) => n !== "ids" });
    expect([...tensors.keys()]).toEqual(["w"]);
  });
  test("leading whitespace before '{' is accepted, as safetensors 0.8 accepts it", () => {
    for (const ws of [" ", "\n", "\t\r\n  "]) {
      const { tensors } = readSafetensors(file(ws + good(), 8), "ws");
      expect(tensors.get("w")!.shape, JSON.stringify(ws)).toEqual([2]);
    }
    // Only JSON whitespace: a form feed or a BOM is still refused.
    rejects(read(file("\f" + good(), 8)), "starting with '{'");
    rejects(read(file("\ufeff" + good(), 8)), "starting with '{'");
  });
  test("F8_E4M3 and F8_E5M2 tensors load as exact float32", () => {
    const f = file(
      `{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[4,8]}}`,
      8,
    );
    f.set([0x7e, 0x01, 0xb8, 0x7f], f.length - 8); // 448, 2^-9, -1, NaN
    f.set([0x7b, 0x01, 0xbc, 0x7c], f.length - 4); // 57344, 2^-16, -1, inf
    const { tensors } = readSafetensors(f, "f8");
    expect(Array.from(tensors.get("a")!.data)).toEqual([448, 2 ** -9, -1, NaN]);
    expect(Array.from(tensors.get("b")!.data)).toEqual([57344, 2 ** -16, -1, Infinity]);
  });
  test("a file that is not safetensors says so, and what it is when recognisable", () => {
    const png = fixture("../../assets/chelsea.png");
    rejects(read(png), "not a safetensors file: it is a PNG image");
    rejects(
      read(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46])),
      "not a safetensors file: it is a JPEG image",
    );
    rejects(
      read(new TextEncoder().encode('{"_class_name": "AutoencoderKL"}')),
      "not a safetensors file: it is JSON text",
    );
    rejects(read(new TextEncoder().encode("hello, this is text\n")), "not a safetensors file: it is a text file");
    // Unrecognised bytes keep the precise rule, and say what it means.
    rejects(read(file(good(), 8, 100_000_001)), "exceeds", "not a safetensors file");
    rejects(read(file(good(), 8, 4000)), "past the end", "truncated, or not a safetensors file");
    // A valid header length that happens to start like a pickle (0x80 0x02) is not misread as one.
    const h = good() + " ".repeat(640 - good().length);
    expect(readSafetensors(file(h, 8), "ok").tensors.get("w")!.shape).toEqual([2]);
  });
  test("out-of-order offsets are fine, as in the reference", () => {
    const f = file(
      `{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`,
      8,
    );
    expect([...readSafetensors(f).tensors.keys()]).toEqual(["b", "a"]);
  });
  test("names like __proto__ and constructor are plain names", () => {
    const t = new Tensor(Float32Array.from([1, 2]), [2]);
    const bytes = writeSafetensors(
      new Map([
        ["__proto__", t],
        ["constructor", t],
        ["toString", t],
      ]),
    );
    const { tensors } = readSafetensors(bytes);
    expect([...tensors.keys()].sort()).toEqual(["__proto__", "constructor", "toString"]);
    expect(tensors.get("__proto__")!.data).toEqual(t.data);
  });
  test("long culprit names are shortened in messages", () => {
    const name = "x".repeat(10_000);
    let msg = "";
    try {
      readSafetensors(file(`{"${name}":{"dtype":"F33","shape":[],"data_offsets":[0,0]}}`, 0), "bad.safetensors");
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("unknown dtype");
    expect(msg.length).toBeLessThan(400);
  });
});
