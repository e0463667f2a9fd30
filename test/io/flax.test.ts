import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import { readFlaxStateDict } from "../../src/io/flax.js";
import { decodeMsgpack, MsgpackExt } from "../../src/io/msgpack.js";
import { readSafetensors } from "../../src/io/safetensors.js";

const fixture = (p: string) => new Uint8Array(readFileSync(`test/fixtures/${p}`));

/** A tiny msgpack encoder for building test inputs (maps, arrays, strings, bins, ints, ext). */
type V = null | boolean | number | string | Uint8Array | V[] | Map<string, V> | { ext: number; data: Uint8Array };
function pack(v: V): Uint8Array {
  const out: number[] = [];
  const u32 = (n: number) => out.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const w = (x: V): void => {
    if (x === null) out.push(0xc0);
    else if (x === true) out.push(0xc3);
    else if (x === false) out.push(0xc2);
    else if (typeof x === "number") {
      if (Number.isInteger(x) && x >= 0 && x < 128) out.push(x);
      else if (Number.isInteger(x) && x >= 0) out.push(0xce), u32(x);
      else {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, x);
        out.push(0xcb, ...b);
      }
    } else if (typeof x === "string") {
      const b = new TextEncoder().encode(x);
      out.push(0xdb), u32(b.length), out.push(...b);
    } else if (x instanceof Uint8Array) {
      out.push(0xc6), u32(x.length);
      for (const b of x) out.push(b);
    } else if (Array.isArray(x)) {
      out.push(0xdd), u32(x.length);
      x.forEach(w);
    } else if (x instanceof Map) {
      out.push(0xdf), u32(x.size);
      for (const [k, y] of x) w(k), w(y);
    } else {
      out.push(0xc9), u32(x.data.length), out.push(x.ext);
      for (const b of x.data) out.push(b);
    }
  };
  w(v);
  return Uint8Array.from(out);
}
const ndarray = (shape: number[], dtype: string, values: number[]) => ({
  ext: 1,
  data: pack([shape, dtype, new Uint8Array(Float32Array.from(values).buffer)]),
});
const tree = (entries: [string, V][]) => new Map<string, V>(entries);

describe("flax checkpoints", () => {
  test("tiny-flax gives exactly the tiny PyTorch state dict", () => {
    const want = readSafetensors(fixture("models/tiny/diffusion_pytorch_model.safetensors"), "tiny").tensors;
    const got = readFlaxStateDict(fixture("models/tiny-flax/diffusion_flax_model.msgpack"), "tiny-flax");
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, t] of want) {
      const g = got.get(k)!;
      expect(g.shape, k).toEqual(t.shape);
      for (let i = 0; i < t.data.length; i++)
        if (g.data[i] !== t.data[i]) throw new Error(`${k}[${i}]: ${g.data[i]} vs ${t.data[i]}`);
    }
  });

  test("kernels are transposed, scale becomes weight, list indices become dots", () => {
    const bytes = pack(
      tree([
        [
          "params",
          tree([
            [
              "encoder",
              tree([
                [
                  "down_blocks_1",
                  tree([
                    [
                      "resnets_0",
                      tree([
                        [
                          "conv1",
                          tree([["kernel", ndarray([1, 2, 2, 3], "float32", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])]]),
                        ],
                      ]),
                    ],
                  ]),
                ],
                [
                  "mid_block",
                  tree([
                    [
                      "attentions_0",
                      tree([
                        ["proj_attn", tree([["kernel", ndarray([2, 3], "float32", [1, 2, 3, 4, 5, 6])]])],
                        ["group_norm", tree([["scale", ndarray([2], "float32", [7, 8])]])],
                      ]),
                    ],
                  ]),
                ],
              ]),
            ],
          ]),
        ],
      ]),
    );
    const sd = readFlaxStateDict(bytes, "t.msgpack");
    const conv = sd.get("encoder.down_blocks.1.resnets.0.conv1.weight")!;
    // HWIO [1,2,2,3] → OIHW [3,2,1,2]: out[o][i][0][w] = in[0][w][i][o] = ((w*2+i)*3+o)
    expect(conv.shape).toEqual([3, 2, 1, 2]);
    expect([...conv.data]).toEqual([0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11]);
    const proj = sd.get("encoder.mid_block.attentions.0.to_out.0.weight")!;
    expect(proj.shape).toEqual([3, 2]);
    expect([...proj.data]).toEqual([1, 4, 2, 5, 3, 6]);
    expect([...sd.get("encoder.mid_block.attentions.0.group_norm.weight")!.data]).toEqual([7, 8]);
  });

  test("chunked arrays are reassembled", () => {
    const bytes = pack(
      tree([
        [
          "quant_conv",
          tree([
            [
              "bias",
              tree([
                ["__msgpack_chunked_array__", true],
                ["shape", tree([["0", 3]])],
                [
                  "chunks",
                  tree([
                    ["0", ndarray([2], "float32", [1, 2])],
                    ["1", ndarray([1], "float32", [3])],
                  ]),
                ],
              ]),
            ],
          ]),
        ],
      ]),
    );
    expect([...readFlaxStateDict(bytes, "c").get("quant_conv.bias")!.data]).toEqual([1, 2, 3]);
  });

  test("bad leaves are refused naming the parameter", () => {
    const bad = (v: V, re: RegExp) => {
      expect(() => readFlaxStateDict(pack(tree([["quant_conv", tree([["bias", v]])]])), "bad.msgpack")).toThrow(
        AutoencoderKLError,
      );
      expect(() => readFlaxStateDict(pack(tree([["quant_conv", tree([["bias", v]])]])), "bad.msgpack")).toThrow(re);
    };
    bad(
      ndarray([3], "float32", [1, 2]),
      /bad\.msgpack: parameter "quant_conv\/bias": float32 shape \[3\] needs 12 bytes, has 8/,
    );
    bad(
      { ext: 1, data: pack([[2], "int32", new Uint8Array(8)]) },
      /"quant_conv\/bias": dtype "int32" cannot be loaded/,
    );
    bad(5, /"quant_conv\/bias": expected an array, found number/);
    bad({ ext: 1, data: pack([[2], "float32"]) }, /not \[shape, dtype, bytes\]/);
  });
});

describe("msgpack decoder", () => {
  test("decodes the standard types", () => {
    const v = decodeMsgpack(Uint8Array.from([0x93, 0x01, 0xff, 0xa2, 0x68, 0x69]));
    expect(v).toEqual([1, -1, "hi"]);
    expect(decodeMsgpack(Uint8Array.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBe(2n ** 64n - 1n);
    expect(decodeMsgpack(Uint8Array.from([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]))).toBe(-2);
    expect(decodeMsgpack(Uint8Array.from([0xca, 0x3f, 0x80, 0, 0]))).toBe(1);
    expect(decodeMsgpack(Uint8Array.from([0xd4, 0x07, 0xaa]))).toEqual(new MsgpackExt(7, Uint8Array.from([0xaa])));
  });

  test("hostile inputs are AutoencoderKLErrors, without huge allocations", () => {
    const cases: [number[], RegExp][] = [
      [[0xdd, 0xff, 0xff, 0xff, 0xff], /cannot fit/],
      [[0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01], /cannot fit/],
      [[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00], /truncated/],
      [[0xa5, 0x61], /truncated/],
      [[0xc1], /invalid type byte/],
      [[0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02], /duplicate map key "a"/],
      [[0x81, 0x90, 0x01], /not a scalar/],
      [[0xa2, 0xff, 0xfe], /UTF-8/],
      [[0x01, 0x02], /trailing/],
      [Array(100).fill(0x91).concat([0x01]), /nesting/],
    ];
    for (const [bytes, re] of cases) {
      let err: unknown;
      try {
        decodeMsgpack(Uint8Array.from(bytes), "m.msgpack");
      } catch (e) {
        err = e;
      }
      expect(err, String(re)).toBeInstanceOf(AutoencoderKLError);
      expect((err as Error).message).toMatch(/^m\.msgpack: msgpack: /);
      expect((err as Error).message).toMatch(re);
    }
  });
});
