import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import {
  readTorchCheckpoint,
  readTorchCheckpointAsync,
  readTorchStateDict,
  readTorchZipRanged,
  Unpickler,
} from "../../src/io/torch-checkpoint.js";
import { entryBytes, openZip } from "../../src/io/zip.js";

const fixture = (p: string) => new Uint8Array(readFileSync(`test/fixtures/${p}`));
const enc = (s: string) => new TextEncoder().encode(s);

/** Pickle opcodes by hand (protocol 2 subset). */
const P = {
  proto: [0x80, 2],
  mark: [0x28],
  stop: [0x2e],
  str: (s: string) => {
    const b = enc(s);
    return [0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b];
  },
  int: (n: number) => [0x4a, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff],
  global: (m: string, n: string) => [0x63, ...enc(`${m}\n${n}\n`)],
  tuple: [0x74],
  emptyDict: [0x7d],
  setitems: [0x75],
  reduce: [0x52],
  binpersid: [0x51],
  newfalse: [0x89],
  none: [0x4e],
};
const pk = (...parts: (number[] | number)[]) => Uint8Array.from(parts.flat());

/** One tensor `name` = storage "0" (FloatStorage, numel) viewed with size/stride at offset. */
function tensorPickle(name: string, numel: number, offset: number, size: number[], stride: number[]): Uint8Array {
  return pk(
    P.proto,
    P.emptyDict,
    P.mark,
    P.str(name),
    P.global("torch._utils", "_rebuild_tensor_v2"),
    P.mark,
    P.mark,
    P.str("storage"),
    P.global("torch", "FloatStorage"),
    P.str("0"),
    P.str("cpu"),
    P.int(numel),
    P.tuple,
    P.binpersid,
    P.int(offset),
    P.mark,
    ...size.map(P.int),
    P.tuple,
    P.mark,
    ...stride.map(P.int),
    P.tuple,
    P.newfalse,
    P.global("collections", "OrderedDict"),
    P.mark,
    P.tuple,
    P.reduce,
    P.tuple,
    P.reduce,
    P.setitems,
    P.stop,
  );
}

/** A stored (uncompressed) zip, enough for torch's layout. */
function zip(entries: [string, Uint8Array][], localExtra = 0): Uint8Array {
  const chunks: number[] = [];
  const central: number[] = [];
  const u16 = (a: number[], n: number) => a.push(n & 0xff, (n >> 8) & 0xff);
  const u32 = (a: number[], n: number) => a.push(n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff);
  for (const [name, data] of entries) {
    const offset = chunks.length;
    const nb = enc(name);
    u32(chunks, 0x04034b50);
    u16(chunks, 20);
    u16(chunks, 0);
    u16(chunks, 0);
    u16(chunks, 0);
    u16(chunks, 0);
    u32(chunks, 0);
    u32(chunks, data.length);
    u32(chunks, data.length);
    u16(chunks, nb.length);
    u16(chunks, localExtra ? localExtra + 4 : 0);
    chunks.push(...nb);
    if (localExtra)
      u16(chunks, 0x4246), u16(chunks, localExtra), chunks.push(...new Array<number>(localExtra).fill(0x5a)); // torch's "FB" padding
    chunks.push(...data);
    u32(central, 0x02014b50);
    u16(central, 20);
    u16(central, 20);
    u16(central, 0);
    u16(central, 0);
    u16(central, 0);
    u16(central, 0);
    u32(central, 0);
    u32(central, data.length);
    u32(central, data.length);
    u16(central, nb.length);
    u16(central, 0);
    u16(central, 0);
    u16(central, 0);
    u16(central, 0);
    u32(central, 0);
    u32(central, offset);
    central.push(...nb);
  }
  const cdOffset = chunks.length;
  const out = [...chunks, ...central];
  u32(out, 0x06054b50);
  u16(out, 0);
  u16(out, 0);
  u16(out, entries.length);
  u16(out, entries.length);
  u32(out, central.length);
  u32(out, cdOffset);
  u16(out, 0);
  return Uint8Array.from(out);
}

function rejects(fn: () => unknown, re: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, String(re)).toBeInstanceOf(AutoencoderKLError);
  expect((err as Error).message).toMatch(re);
}

describe("torch checkpoints", () => {
  test("zip and legacy fixtures describe the same 125 tensors", () => {
    const a = readTorchCheckpoint(fixture("models/tiny-ckpt/tiny.ckpt"), "tiny.ckpt");
    const b = readTorchCheckpoint(fixture("models/tiny-ckpt/tiny-legacy.ckpt"), "tiny-legacy.ckpt");
    expect(a.tensors.size).toBe(125);
    expect([...a.tensors.keys()]).toEqual([...b.tensors.keys()]);
    expect((a.root as Map<string, unknown>).get("global_step")).toBe(470000);
    const filtered = readTorchStateDict(fixture("models/tiny-ckpt/tiny.ckpt"), "tiny.ckpt", {
      filter: (n) => n.endsWith(".bias"),
    });
    expect([...filtered.keys()].every((n) => n.endsWith(".bias"))).toBe(true);
  });

  test("ranged zip reading fetches the directory, data.pkl and only the storages asked for", async () => {
    const bytes = fixture("models/tiny-ckpt/tiny.ckpt");
    const whole = readTorchCheckpoint(bytes, "tiny.ckpt");
    let read = 0;
    let requests = 0;
    const ra = {
      size: bytes.length,
      read: async (s: number, e: number) => ((read += e - s), requests++, bytes.subarray(s, e)),
    };
    const ranged = await readTorchZipRanged(ra, "tiny.ckpt");
    expect([...ranged.tensors.keys()]).toEqual([...whole.tensors.keys()]);
    const all = [...whole.tensors.keys()];
    const wanted = [all[0], all[1], all[all.length - 1]];
    expect(() => ranged.load(wanted[0])).toThrow(/was not read/);
    const progress: number[] = [];
    await ranged.prefetch(wanted, (loaded) => progress.push(loaded));
    for (const n of wanted) expect(ranged.load(n)).toEqual(whole.load(n));
    expect(read).toBeLessThan(bytes.length / 4); // the big convs in between are skipped
    expect(requests).toBeLessThan(8);
    expect(progress.at(-1)).toBe(wanted.reduce((n, k) => n + whole.tensors.get(k)!.storage.numel * 4, 0));
  });

  test("ranged reading copes with local headers longer than its read-ahead", async () => {
    const data = new Uint8Array(Float32Array.from([1, 2, 3]).buffer);
    const bytes = zip(
      [
        ["archive/data.pkl", tensorPickle("w", 3, 0, [3], [1])],
        ["archive/data/0", data],
      ],
      3000,
    );
    expect([...readTorchStateDict(bytes, "x.pt").get("w")!.data]).toEqual([1, 2, 3]);
    const ranged = await readTorchZipRanged({ size: bytes.length, read: async (s, e) => bytes.subarray(s, e) }, "x.pt");
    await ranged.prefetch(["w"]);
    expect([...ranged.load("w").data]).toEqual([1, 2, 3]);
  });

  test("non-contiguous tensors are gathered through their strides", () => {
    const data = new Uint8Array(Float32Array.from([0, 1, 2, 3, 4, 5, 6]).buffer);
    // A transposed 2×3 view ([3,2] with stride [1,3]) at offset 1.
    const bytes = zip([
      ["archive/data.pkl", tensorPickle("w", 7, 1, [3, 2], [1, 3])],
      ["archive/data/0", data],
    ]);
    const t = readTorchStateDict(bytes, "t.pt").get("w")!;
    expect(t.shape).toEqual([3, 2]);
    expect([...t.data]).toEqual([1, 4, 2, 5, 3, 6]);
  });

  test("a view reaching past its storage is refused", () => {
    const data = new Uint8Array(Float32Array.from([0, 1, 2, 3]).buffer);
    const bytes = zip([
      ["archive/data.pkl", tensorPickle("w", 4, 2, [3], [1])],
      ["archive/data/0", data],
    ]);
    rejects(() => readTorchStateDict(bytes, "v.pt"), /v\.pt: tensor "w": .*reaches past its storage of 4 elements/);
  });

  test("a storage file shorter than its element count is refused", () => {
    const bytes = zip([
      ["archive/data.pkl", tensorPickle("w", 4, 0, [4], [1])],
      ["archive/data/0", new Uint8Array(8)],
    ]);
    rejects(() => readTorchStateDict(bytes, "s.pt"), /s\.pt: storage "0" has 8 bytes, needs 16/);
  });

  test("a missing storage entry is refused", () => {
    const bytes = zip([["archive/data.pkl", tensorPickle("w", 4, 0, [4], [1])]]);
    rejects(() => readTorchStateDict(bytes, "m.pt"), /m\.pt: storage "0" is missing/);
  });

  test("non-float storages are refused by name unless filtered out", () => {
    const p = tensorPickle("ids", 2, 0, [2], [1]);
    const longPickle = new Uint8Array(
      [...p].join(",").replace(enc("FloatStorage").join(","), enc("LongStorage").join(",")).split(",").map(Number),
    );
    const bytes = zip([
      ["archive/data.pkl", longPickle],
      ["archive/data/0", new Uint8Array(16)],
    ]);
    rejects(() => readTorchStateDict(bytes, "i.pt"), /tensor "ids": dtype I64 \(torch\.LongStorage\)/);
    expect(readTorchStateDict(bytes, "i.pt", { filter: () => false }).size).toBe(0);
  });

  test("float8 storages (torch.float8_e4m3fn, float8_e5m2) load as exact float32", () => {
    const withStorage = (cls: string) => {
      const p = tensorPickle("w", 4, 0, [4], [1]);
      return new Uint8Array(
        [...p].join(",").replace(enc("FloatStorage").join(","), enc(cls).join(",")).split(",").map(Number),
      );
    };
    const e4m3 = zip([
      ["archive/data.pkl", withStorage("Float8_e4m3fnStorage")],
      ["archive/data/0", Uint8Array.from([0x7e, 0x01, 0xb8, 0x38])],
    ]);
    expect(Array.from(readTorchStateDict(e4m3, "f8.pt").get("w")!.data)).toEqual([448, 2 ** -9, -1, 1]);
    const e5m2 = zip([
      ["archive/data.pkl", withStorage("Float8_e5m2Storage")],
      ["archive/data/0", Uint8Array.from([0x7b, 0x01, 0xbc, 0x7c])],
    ]);
    expect(Array.from(readTorchStateDict(e5m2, "f8.pt").get("w")!.data)).toEqual([57344, 2 ** -16, -1, Infinity]);
  });

  test("deflated entries load through the async reader", async () => {
    const pkl = tensorPickle("w", 2, 0, [2], [1]);
    const data = new Uint8Array(Float32Array.from([5, 6]).buffer);
    const deflate = async (b: Uint8Array<ArrayBuffer>) =>
      new Uint8Array(
        await new Response(new Blob([b]).stream().pipeThrough(new CompressionStream("deflate-raw"))).arrayBuffer(),
      );
    // Build a stored zip, then patch in deflated data for the storage entry.
    const compressed = await deflate(data);
    const bytes = zip([
      ["archive/data.pkl", pkl],
      ["archive/data/0", compressed],
    ]);
    // Mark entry 2 as deflate with uncompressed size 8 in the central directory.
    const z = openZip(bytes, "z");
    const dv = new DataView(bytes.buffer);
    const cd = bytes.length - 22 - (46 + "archive/data.pkl".length) - (46 + "archive/data/0".length);
    const second = cd + 46 + "archive/data.pkl".length;
    dv.setUint16(second + 10, 8, true);
    dv.setUint32(second + 24, 8, true);
    void z;
    expect(() => readTorchStateDict(bytes, "d.pt")).toThrow(/compressed/);
    const ckpt = await readTorchCheckpointAsync(bytes, "d.pt");
    expect([...ckpt.load("w").data]).toEqual([5, 6]);
    const zz = openZip(bytes, "z");
    expect([...(await entryBytes(zz, zz.entries.get("archive/data/0")!))]).toEqual([...data]);
    // A lying size is caught, not trusted.
    dv.setUint32(second + 24, 12, true);
    const bad = openZip(bytes, "bad.zip");
    await expect(entryBytes(bad, bad.entries.get("archive/data/0")!)).rejects.toThrow(
      /bad\.zip: .*inflates to 8 bytes, not the declared 12/,
    );
  });
});

describe("the unpickler refuses anything that could run code", () => {
  const run = (bytes: Uint8Array) => () => new Unpickler(bytes, 0, "evil.pkl").load();
  test("forbidden globals are named, via GLOBAL and STACK_GLOBAL", () => {
    rejects(run(pk(P.proto, P.global("os", "system"), P.stop)), /^evil\.pkl: pickle: forbidden global os\.system$/);
    rejects(run(pk(P.proto, P.global("__builtin__", "eval"), P.stop)), /forbidden global builtins\.eval/);
    rejects(
      run(pk(P.proto, 0x8c, 10, ...enc("subprocess"), 0x8c, 5, ...enc("Popen"), 0x93, P.stop)),
      /forbidden global subprocess\.Popen/,
    );
    rejects(run(pk(P.proto, P.global("torch", "load"), P.stop)), /forbidden global torch\.load/);
    rejects(run(pk(P.proto, P.global("torch", "constructor"), P.stop)), /forbidden global torch\.constructor/);
    rejects(run(pk(P.proto, P.global("collections", "__proto__"), P.stop)), /forbidden global collections\.__proto__/);
  });
  test("the malicious fixture is refused at its global, before its REDUCE", () => {
    rejects(
      () => readTorchCheckpoint(fixture("models/tiny-ckpt/malicious.ckpt"), "malicious.ckpt"),
      /malicious\.ckpt: pickle: forbidden global builtins\.print/,
    );
  });
  test("instance-building opcodes and extensions are refused", () => {
    rejects(run(pk(P.proto, P.mark, 0x69, ...enc("os\nsystem\n"), P.stop)), /INST/);
    rejects(run(pk(P.proto, P.mark, 0x6f, P.stop)), /OBJ/);
    rejects(run(pk(P.proto, 0x82, 1, P.stop)), /extension registry/);
  });
  test("allowed globals can't be misused", () => {
    rejects(
      run(pk(P.proto, P.global("torch", "FloatStorage"), P.mark, P.tuple, P.reduce, P.stop)),
      /torch\.FloatStorage cannot be called/,
    );
    rejects(run(pk(P.proto, P.global("torch._utils", "_rebuild_tensor_v2"), 0x81, P.stop)), /stack underflow|NEWOBJ/);
    rejects(run(pk(P.proto, P.int(3), P.mark, P.tuple, P.reduce, P.stop)), /REDUCE on a non-callable/);
    rejects(
      run(
        pk(
          P.proto,
          P.global("torch._utils", "_rebuild_tensor_v2"),
          P.mark,
          P.int(1),
          P.int(0),
          P.tuple,
          P.reduce,
          P.stop,
        ),
      ),
      /not a storage/,
    );
    rejects(
      run(pk(P.proto, P.mark, P.str("storage"), P.tuple, P.binpersid, P.stop)),
      /persistent id outside the main pickle/,
    );
  });
  test("malformed streams", () => {
    rejects(run(pk(P.proto, P.str("abc"))), /ended without STOP/);
    rejects(run(pk(P.proto, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x61)), /truncated/);
    rejects(run(pk(P.proto, P.stop)), /stack underflow/);
    rejects(run(pk(P.proto, 0x68, 5, P.stop)), /memo key 5 not defined/);
    rejects(run(pk(P.proto, 0xff)), /unknown opcode 0xff/);
    rejects(run(pk(P.proto, P.tuple)), /no MARK/);
    rejects(run(pk(P.proto, 0x29, P.int(1), 0x61, P.stop)), /APPEND\(S\) on a non-list/);
    rejects(
      run(pk(P.proto, 0x8b, 0x00, 0x10, 0x00, 0x00, ...new Array(4096).fill(1), P.stop)),
      /integer of 4096 bytes/,
    );
    rejects(run(pk(0x80, 9)), /unsupported pickle protocol 9/);
  });
  test("plain values decode", () => {
    const v = new Unpickler(
      pk(P.proto, P.mark, P.int(-5), P.str("é"), P.none, 0x88, 0x8a, 1, 0xff, P.tuple, P.stop),
      0,
      "ok",
    ).load();
    expect(v).toEqual([-5, "é", null, true, -1]);
  });
});

describe("zip reader", () => {
  test("bad archives are AutoencoderKLErrors", () => {
    rejects(
      () => openZip(Uint8Array.from([0x50, 0x4b, 3, 4, 0, 0]), "a.zip"),
      /a\.zip: not a valid zip archive: no end-of-central-directory/,
    );
    const good = zip([["archive/data.pkl", new Uint8Array(4)]]);
    const truncated = good.slice();
    new DataView(truncated.buffer).setUint32(truncated.length - 6, 10_000, true); // central directory offset
    rejects(() => openZip(truncated, "b.zip"), /b\.zip: .*central directory runs past/);
    const dup = zip([
      ["x", new Uint8Array(1)],
      ["x", new Uint8Array(1)],
    ]);
    rejects(() => openZip(dup, "c.zip"), /duplicate entry "x"/);
    rejects(
      () => readTorchCheckpoint(zip([["x", new Uint8Array(1)]]), "d.pt"),
      /d\.pt: torch zip archive needs exactly one <dir>\/data\.pkl, found 0/,
    );
  });
});
