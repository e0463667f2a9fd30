// Issue 13, item 1: `components` loads one half of the VAE. A half model decodes (or encodes) exactly as
// the full one, the other half's bytes are never read (counted through the file handle, an http server
// with ranges, and a Blob), loading stays strict for the half it loads, and the missing half throws.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoencoderKL, AutoencoderKLError, type Components, Tensor } from "../src/index.js";
import {
  readSafetensors,
  readSafetensorsHeader,
  type SafetensorsEntry,
  writeSafetensors,
} from "../src/io/safetensors.js";
import { demoModelPath } from "../src/node.js";
import { FIXTURES, manifest } from "./helpers/fixtures.js";
import { type StaticServer, startStaticServer } from "./helpers/static-server.js";

const DEMO = demoModelPath();
const TINY = resolve(FIXTURES, "models/tiny");
const WEIGHTS = "diffusion_pytorch_model.safetensors";
const BACKEND = { backend: "wasm", threads: 1 } as const;

/** Deterministic pseudo-random values in [-1, 1]. */
function randomTensor(shape: number[], seed: number): Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32) * 2 - 1;
  }
  return new Tensor(data, shape);
}

const isDecoderKey = (k: string) => k.startsWith("decoder.") || k.startsWith("post_quant_conv.");
const isEncoderKey = (k: string) => k.startsWith("encoder.") || k.startsWith("quant_conv.");

/** A file's header and the byte ranges of each half. */
function layout(file: string) {
  const header = readSafetensorsHeader(new Uint8Array(readFileSync(file)), file);
  const bytes = (es: SafetensorsEntry[]) => es.reduce((n, e) => n + e.end - e.start, 0);
  const decoder = header.entries.filter((e) => isDecoderKey(e.name));
  const encoder = header.entries.filter((e) => isEncoderKey(e.name));
  return { header, decoder, encoder, decoderBytes: bytes(decoder), encoderBytes: bytes(encoder) };
}

const overlaps = (r: { start: number; end: number }, es: SafetensorsEntry[]) =>
  es.filter((e) => e.start < r.end && e.end > r.start && e.end > e.start);

async function decodeBoth(dir: string, z: Tensor): Promise<{ full: Float32Array; half: Float32Array }> {
  const full = await AutoencoderKL.fromPretrained(dir, BACKEND);
  const half = await AutoencoderKL.fromPretrained(dir, { ...BACKEND, components: "decoder" });
  try {
    return { full: (await full.decode(z)).sample.data, half: (await half.decode(z)).sample.data };
  } finally {
    full.dispose();
    half.dispose();
  }
}

describe("a half model computes exactly what the full model computes", () => {
  it("demo model: decoder-only decode equals the full model's, bit for bit", async () => {
    const z = randomTensor([1, 16, 8, 8], 1);
    const { full, half } = await decodeBoth(DEMO, z);
    expect(half.length).toBe(3 * 64 * 64);
    expect(Buffer.from(half.buffer).equals(Buffer.from(full.buffer))).toBe(true);
  });

  it("tiny fixture model: decoder-only decode and encoder-only encode equal the full model's, bit for bit", async () => {
    const z = randomTensor([2, 4, 5, 6], 2);
    const { full, half } = await decodeBoth(TINY, z);
    expect(Buffer.from(half.buffer).equals(Buffer.from(full.buffer))).toBe(true);

    const x = randomTensor([1, 3, 16, 12], 3);
    const both = await AutoencoderKL.fromPretrained(TINY, BACKEND);
    const enc = await AutoencoderKL.fromPretrained(TINY, { ...BACKEND, components: "encoder" });
    const a = (await both.encode(x)).latentDist,
      b = (await enc.encode(x)).latentDist;
    expect(Array.from(b.mean.data)).toEqual(Array.from(a.mean.data));
    expect(Array.from(b.logvar.data)).toEqual(Array.from(a.logvar.data));
    expect(enc.config).toEqual(both.config); // the full config, whichever half is loaded
    both.dispose();
    enc.dispose();
  });

  it("holds only its half's parameters (fromConfig builds one half too)", async () => {
    const cfg = manifest.models.tiny.config;
    const full = await AutoencoderKL.fromConfig(cfg, { backend: "reference" });
    const dec = await AutoencoderKL.fromConfig(cfg, { backend: "reference", components: "decoder" });
    const enc = await AutoencoderKL.fromConfig(cfg, { backend: "reference", components: "encoder" });
    const keys = (v: AutoencoderKL) => [...v.parameterShapes().keys()];
    expect(keys(dec).length).toBeGreaterThan(0);
    expect(keys(dec)).toEqual(keys(full).filter(isDecoderKey));
    expect(keys(enc)).toEqual(keys(full).filter(isEncoderKey));
    expect([dec.components, enc.components, full.components]).toEqual(["decoder", "encoder", "both"]);
    for (const v of [full, dec, enc]) v.dispose();
  });

  it("Flax and legacy pickle checkpoints (read whole, then the other half dropped) decode the same", async () => {
    const z = randomTensor([1, 4, 4, 4], 4);
    const ref = await AutoencoderKL.fromPretrained(TINY, BACKEND);
    const want = Array.from((await ref.decode(z)).sample.data);
    ref.dispose();
    const loads = [
      AutoencoderKL.fromPretrained(resolve(FIXTURES, "models/tiny-flax"), {
        ...BACKEND,
        fromFlax: true,
        components: "decoder",
        strict: true,
      }),
      AutoencoderKL.fromSingleFile(resolve(FIXTURES, "models/tiny-ckpt/tiny-legacy.ckpt"), {
        ...BACKEND,
        config: manifest.models.tiny.config,
        components: "decoder",
      }),
      AutoencoderKL.fromSingleFile(resolve(FIXTURES, "models/tiny-ckpt/tiny.ckpt"), {
        ...BACKEND,
        config: manifest.models.tiny.config,
        components: "decoder",
      }),
    ];
    for (const vae of await Promise.all(loads)) {
      expect([...vae.parameterShapes().keys()].every(isDecoderKey)).toBe(true);
      expect(Array.from((await vae.decode(z)).sample.data)).toEqual(want);
      vae.dispose();
    }
  });
});

describe("the other half's bytes are never read", () => {
  let server: StaticServer;
  beforeAll(async () => {
    server = await startStaticServer(resolve(DEMO, ".."), { ranges: true });
  });
  afterAll(() => server.close());

  /** Records every FileHandle.read (position, bytes read) while `fn` runs (config.json is read by readFile, not counted). */
  async function countFileReads(fn: () => Promise<void>): Promise<{ start: number; end: number }[]> {
    const probe = await open(join(DEMO, "config.json"));
    const proto = Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    const reads: { start: number; end: number }[] = [];
    const original = proto.read;
    proto.read = async function (this: unknown, ...args: unknown[]) {
      const r = await original.apply(this, args);
      if (typeof args[3] === "number") reads.push({ start: args[3], end: args[3] + r.bytesRead });
      return r;
    };
    try {
      await fn();
    } finally {
      proto.read = original;
    }
    return reads;
  }

  for (const [components, kept, skipped] of [
    ["decoder", "decoder", "encoder"],
    ["encoder", "encoder", "decoder"],
  ] as const) {
    it(`local folder, components: "${components}": only the header and the ${kept}'s ranges are read`, async () => {
      const l = layout(join(DEMO, WEIGHTS));
      const reads = await countFileReads(async () => {
        (await AutoencoderKL.fromPretrained(DEMO, { backend: "reference", components })).dispose();
      });
      expect(reads.length).toBeGreaterThan(2);
      for (const r of reads) expect(overlaps(r, l[skipped]), `read [${r.start}, ${r.end})`).toEqual([]);
      const total = reads.reduce((n, r) => n + r.end - r.start, 0);
      // The 8-byte length, the header, then exactly the kept half's tensors.
      expect(total).toBe(8 + l.header.dataStart + (kept === "decoder" ? l.decoderBytes : l.encoderBytes));
    });
  }

  it('http folder with Range support, components: "decoder": the encoder\'s ranges are never requested', async () => {
    const l = layout(join(DEMO, WEIGHTS));
    expect(l.encoderBytes).toBeGreaterThan(1 << 20); // so a skipped gap is a real saving here
    const before = server.served.length;
    const vae = await AutoencoderKL.fromPretrained(`${server.url}demo-vae/`, { ...BACKEND, components: "decoder" });
    const served = server.served.slice(before).filter((s) => s.path.endsWith(WEIGHTS));
    for (const r of served) expect(overlaps(r, l.encoder), `range [${r.start}, ${r.end})`).toEqual([]);
    const total = served.reduce((n, r) => n + r.end - r.start, 0);
    // The 8-byte probe that asks for ranges, the 8-byte length, the header, then the decoder's tensors.
    expect(total).toBe(8 + 8 + l.header.dataStart + l.decoderBytes);
    // …and it decodes like the model loaded from disk.
    const z = randomTensor([1, 16, 4, 4], 5);
    const local = await AutoencoderKL.fromPretrained(DEMO, { ...BACKEND, components: "decoder" });
    expect(Array.from((await vae.decode(z)).sample.data)).toEqual(Array.from((await local.decode(z)).sample.data));
    vae.dispose();
    local.dispose();
  });

  it("a server that ignores Range: one whole read, then the encoder is dropped before conversion", async () => {
    const plain = await startStaticServer(resolve(DEMO, ".."));
    try {
      const vae = await AutoencoderKL.fromPretrained(`${plain.url}demo-vae/`, {
        backend: "reference",
        components: "decoder",
        strict: true,
      });
      expect([...vae.parameterShapes().keys()].every(isDecoderKey)).toBe(true);
      const whole = plain.served.filter((s) => s.path.endsWith(WEIGHTS));
      // The range probe, answered 200 and cancelled by the client, then the one whole read.
      const size = readFileSync(join(DEMO, WEIGHTS)).length;
      expect(whole.map((s) => s.end - s.start)).toEqual([size, size]);
      vae.dispose();
    } finally {
      await plain.close();
    }
  });

  it("single files as Blobs: only the header and the decoder's slices; the config is the full one", async () => {
    const bytes = readFileSync(join(DEMO, WEIGHTS));
    const l = layout(join(DEMO, WEIGHTS));
    const slices: { start: number; end: number }[] = [];
    class CountingBlob extends Blob {
      override slice(start?: number, end?: number, type?: string): Blob {
        slices.push({ start: start ?? 0, end: end ?? this.size });
        return super.slice(start, end, type);
      }
    }
    const half = await AutoencoderKL.fromSingleFile(new CountingBlob([bytes]), { ...BACKEND, components: "decoder" });
    for (const r of slices) expect(overlaps(r, l.encoder)).toEqual([]);
    expect(slices.reduce((n, r) => n + r.end - r.start, 0)).toBe(8 + l.header.dataStart + l.decoderBytes);
    const full = await AutoencoderKL.fromSingleFile(new Uint8Array(bytes), BACKEND);
    expect(half.config).toEqual(full.config);
    const z = randomTensor([1, 16, 4, 4], 6);
    expect(Array.from((await half.decode(z)).sample.data)).toEqual(Array.from((await full.decode(z)).sample.data));
    // Bytes in memory: the encoder is never converted, the result is the same.
    const inMemory = await AutoencoderKL.fromSingleFile(new Uint8Array(bytes), {
      ...BACKEND,
      components: "decoder",
      strict: true,
    });
    expect(inMemory.config).toEqual(full.config);
    expect([...inMemory.parameterShapes().keys()].every(isDecoderKey)).toBe(true);
    expect(Array.from((await inMemory.decode(z)).sample.data)).toEqual(Array.from((await full.decode(z)).sample.data));
    for (const v of [half, full, inMemory]) v.dispose();
  });

  it("a whole SD-style single file, decoder-only: same inferred config, only decoder tensors", async () => {
    const file = resolve(FIXTURES, "models/sdlike-single-file.safetensors");
    const full = await AutoencoderKL.fromSingleFile(file, { backend: "reference" });
    const half = await AutoencoderKL.fromSingleFile(file, { backend: "reference", components: "decoder" });
    expect(half.config).toEqual(full.config);
    const want = await full.stateDict();
    const got = await half.stateDict();
    expect([...got.keys()]).toEqual([...want.keys()].filter(isDecoderKey));
    for (const [k, t] of got) expect(Array.from(t.data), k).toEqual(Array.from(want.get(k)!.data));
    full.dispose();
    half.dispose();
  });
});

describe("strict loading of a half", () => {
  const dirs: string[] = [];
  const tiny = () => readSafetensors(new Uint8Array(readFileSync(join(TINY, WEIGHTS)))).tensors;
  function folder(tensors: Map<string, Tensor>): string {
    const dir = mkdtempSync(join(tmpdir(), "akl-components-"));
    dirs.push(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify(manifest.models.tiny.config));
    writeFileSync(join(dir, WEIGHTS), writeSafetensors(tensors));
    return dir;
  }
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("the other half's keys are expected-but-skipped, even with strict: true (and may be absent or malformed)", async () => {
    const all = tiny();
    const decoderOnly = new Map([...all].filter(([k]) => isDecoderKey(k)));
    const badEncoder = new Map(all);
    badEncoder.set("encoder.conv_in.weight", new Tensor(new Float32Array(6), [1, 6]));
    for (const dir of [folder(all), folder(decoderOnly), folder(badEncoder)]) {
      const warnings: string[] = [];
      const vae = await AutoencoderKL.fromPretrained(dir, {
        backend: "reference",
        components: "decoder",
        strict: true,
        onWarning: (m) => warnings.push(m),
      });
      expect(warnings).toEqual([]);
      vae.dispose();
    }
    // In memory too: a full state dict loads into a decoder-only model under strict rules.
    const vae = await AutoencoderKL.fromConfig(manifest.models.tiny.config, {
      backend: "reference",
      components: "decoder",
    });
    await vae.loadStateDict(all, "tiny", { strict: true });
    vae.dispose();
  });

  it("missing and wrong-shaped keys of the loaded half are still reported by name; unknown keys stay unexpected", async () => {
    const all = tiny();
    const missing = new Map(all);
    missing.delete("decoder.conv_in.bias");
    const wrong = new Map(all);
    wrong.set("post_quant_conv.weight", new Tensor(new Float32Array(4), [4, 1, 1, 1]));
    const extra = new Map(all);
    extra.set("decoder.extra.weight", new Tensor(new Float32Array(1), [1]));
    extra.set("loss.logvar", new Tensor(new Float32Array(1), [1]));
    const load = (dir: string, strict = false) =>
      AutoencoderKL.fromPretrained(dir, { backend: "reference", components: "decoder", strict });
    await expect(load(folder(missing))).rejects.toThrow(/missing keys \(1\): decoder\.conv_in\.bias/);
    await expect(load(folder(wrong))).rejects.toThrow(
      /wrong shapes \(1\): post_quant_conv\.weight: expected \[4, 4, 1, 1\], got \[4, 1, 1, 1\]/,
    );
    const e = await load(folder(extra), true).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(AutoencoderKLError);
    expect((e as Error).message).toMatch(
      /unexpected keys \(2\): .*decoder\.extra\.weight.*loss\.logvar|unexpected keys \(2\): .*loss\.logvar.*decoder\.extra\.weight/,
    );
  });
});

describe("calling the missing half", () => {
  let dec: AutoencoderKL, enc: AutoencoderKL;
  beforeAll(async () => {
    dec = await AutoencoderKL.fromPretrained(TINY, { backend: "reference", components: "decoder" });
    enc = await AutoencoderKL.fromPretrained(TINY, { backend: "reference", components: "encoder" });
  });
  afterAll(() => {
    dec.dispose();
    enc.dispose();
  });
  const x = randomTensor([1, 3, 16, 16], 7);
  const z = randomTensor([1, 4, 8, 8], 8);

  async function expectRefusal(p: () => Promise<unknown>, call: string, loaded: Components) {
    const e = await p().then(
      () => null,
      (err: unknown) => err,
    );
    expect(e, call).toBeInstanceOf(AutoencoderKLError);
    expect((e as AutoencoderKLError).source).toBe(call);
    expect((e as Error).message).toContain(`loaded with components: "${loaded}"`);
  }

  it("encode / tiledEncode / exact tiling on a decoder-only model", async () => {
    await expectRefusal(() => dec.encode(x), "encode", "decoder");
    await expectRefusal(() => dec.tiledEncode(x), "tiledEncode", "decoder");
    dec.enableTiling({ tileSampleMinSize: 8, mode: "exact" });
    await expectRefusal(() => dec.encode(x), "encode", "decoder");
    dec.disableTiling();
    expect((await dec.decode(z)).sample.shape).toEqual([1, 3, 16, 16]);
  });

  it("decode / tiledDecode on an encoder-only model", async () => {
    await expectRefusal(() => enc.decode(z), "decode", "encoder");
    await expectRefusal(() => enc.tiledDecode(z), "tiledDecode", "encoder");
    expect((await enc.encode(x)).latentDist.mean.shape).toEqual([1, 4, 8, 8]);
  });

  it("forward and savePretrained need both halves", async () => {
    for (const [vae, loaded] of [
      [dec, "decoder"],
      [enc, "encoder"],
    ] as const) {
      await expectRefusal(() => vae.forward(x), "forward", loaded);
      await expectRefusal(() => vae.savePretrained(join(tmpdir(), "akl-never-written")), "savePretrained", loaded);
    }
  });

  it("an unknown components value is refused by name", async () => {
    for (const load of [
      () => AutoencoderKL.fromPretrained(TINY, { backend: "reference", components: "unet" as Components }),
      () =>
        AutoencoderKL.fromSingleFile(join(TINY, WEIGHTS), {
          backend: "reference",
          components: "Decoder" as Components,
        }),
      () =>
        AutoencoderKL.fromConfig(manifest.models.tiny.config, {
          backend: "reference",
          components: 1 as unknown as Components,
        }),
    ]) {
      await expect(load()).rejects.toThrow(/options\.components: must be "decoder", "encoder" or "both"/);
    }
  });
});
