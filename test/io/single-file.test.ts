import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import { inferVaeConfig } from "../../src/io/infer-config.js";
import { convertVaeStateDict, planVaeKeys } from "../../src/io/original-keys.js";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { convertSingleFile, detectSingleFileFormat, readSingleFile } from "../../src/io/single-file.js";
import { Tensor } from "../../src/tensor/tensor.js";

const path = (p: string) => `test/fixtures/${p}`;
const fixture = (p: string) => new Uint8Array(readFileSync(path(p)));
const json = (p: string) => JSON.parse(readFileSync(path(p), "utf8")) as Record<string, unknown>;

function sameKeysAndShapes(got: Map<string, Tensor>, want: Map<string, Tensor>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, t] of want) expect(got.get(k)!.shape, k).toEqual(t.shape);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Fields a file's shapes determine (the rest can't be inferred). */
const INFERABLE = [
  "in_channels",
  "out_channels",
  "down_block_types",
  "up_block_types",
  "block_out_channels",
  "layers_per_block",
  "latent_channels",
  "use_quant_conv",
  "use_post_quant_conv",
  "mid_block_add_attention",
];
const pick = (c: Record<string, unknown>, defaults: Record<string, unknown> = {}) =>
  Object.fromEntries(INFERABLE.map((k) => [k, c[k] ?? defaults[k]]));
const DIFFUSERS_DEFAULTS = { use_quant_conv: true, use_post_quant_conv: true, mid_block_add_attention: true };

describe("original latent-diffusion names", () => {
  const sdlike = readSafetensors(fixture("models/sdlike/diffusion_pytorch_model.safetensors"), "sdlike").tensors;
  const sdlike16 = readSafetensors(
    fixture("models/sdlike/diffusion_pytorch_model.fp16.safetensors"),
    "sdlike16",
  ).tensors;

  test("the SD single file converts to exactly the diffusers keys, shapes and (fp16) values", async () => {
    const { stateDict, config } = await readSingleFile(path("models/sdlike-single-file.safetensors"));
    sameKeysAndShapes(stateDict, sdlike);
    for (const [k, t] of sdlike16) {
      expect(maxAbsDiff(stateDict.get(k)!.data, t.data), k).toBe(0);
      const ref = sdlike.get(k)!.data;
      const got = stateDict.get(k)!.data;
      for (let i = 0; i < ref.length; i++) {
        if (Math.abs(got[i] - ref[i]) > Math.abs(ref[i]) * 2 ** -11 + 2 ** -24) throw new Error(`${k}[${i}]`);
      }
    }
    expect(pick(config)).toEqual(pick(json("models/sdlike/config.json"), DIFFUSERS_DEFAULTS));
    expect(config.norm_num_groups).toBe(32); // the file can't tell 16 from 32: config must say
  });

  test("options.config overrides what can't be inferred", async () => {
    const { config } = await readSingleFile(fixture("models/sdlike-single-file.safetensors"), {
      config: { norm_num_groups: 16, sample_size: 32 },
    });
    expect(config.norm_num_groups).toBe(16);
    expect(config.sample_size).toBe(32);
  });

  test("decoder.up.{i} is decoder.up_blocks.{L-1-i}; attention 1×1 convs become Linear weights", () => {
    const plan = planVaeKeys([
      "first_stage_model.decoder.up.0.block.0.conv1.weight",
      "first_stage_model.decoder.up.3.upsample.conv.weight",
      "first_stage_model.decoder.up.3.block.2.nin_shortcut.bias",
      "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight",
      "first_stage_model.encoder.down.2.downsample.conv.bias",
      "first_stage_model.encoder.mid.block_2.norm1.weight",
      "first_stage_model.encoder.mid.attn_1.proj_out.weight",
      "first_stage_model.encoder.mid.attn_1.norm.bias",
      "first_stage_model.decoder.norm_out.weight",
      "first_stage_model.quant_conv.bias",
      "model.diffusion_model.out.2.weight",
      "encoder.conv_in.weight", // unprefixed in a prefixed file: someone else's
    ]);
    expect([...plan.rename.values()]).toEqual([
      "decoder.up_blocks.3.resnets.0.conv1.weight",
      "decoder.up_blocks.0.upsamplers.0.conv.weight",
      "decoder.up_blocks.0.resnets.2.conv_shortcut.bias",
      "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
      "encoder.down_blocks.2.downsamplers.0.conv.bias",
      "encoder.mid_block.resnets.1.norm1.weight",
      "encoder.mid_block.attentions.0.to_out.0.weight",
      "encoder.mid_block.attentions.0.group_norm.bias",
      "decoder.conv_norm_out.weight",
      "quant_conv.bias",
    ]);
    expect(plan.skipped).toEqual(["model.diffusion_model.out.2.weight", "encoder.conv_in.weight"]);
    const { stateDict } = convertVaeStateDict(
      new Map([["encoder.mid.attn_1.q.weight", new Tensor(new Float32Array(4), [2, 2, 1, 1])]]),
    );
    expect(stateDict.get("encoder.mid_block.attentions.0.to_q.weight")!.shape).toEqual([2, 2]);
    expect(() =>
      convertVaeStateDict(
        new Map([["encoder.mid.attn_1.q.weight", new Tensor(new Float32Array(8), [2, 2, 2, 1])]]),
        "f.ckpt",
      ),
    ).toThrow(/f\.ckpt: .*to_q\.weight.*not a 1×1/);
  });

  test("legacy diffusers attention names and VAE-only files without prefix", () => {
    const t = new Tensor(new Float32Array(4), [2, 2]);
    const plan = planVaeKeys([
      "encoder.mid_block.attentions.0.query.weight",
      "decoder.mid_block.attentions.0.proj_attn.bias",
      "decoder.mid_block.attentions.0.group_norm.weight",
      "loss.logvar",
      "model_ema.decay",
    ]);
    expect([...plan.rename.values()]).toEqual([
      "encoder.mid_block.attentions.0.to_q.weight",
      "decoder.mid_block.attentions.0.to_out.0.bias",
      "decoder.mid_block.attentions.0.group_norm.weight",
    ]);
    expect(plan.skipped).toEqual(["loss.logvar", "model_ema.decay"]);
    expect(() =>
      planVaeKeys(["encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight"], "dup.safetensors"),
    ).toThrow(/dup\.safetensors: .*both map to "encoder\.mid_block\.attentions\.0\.to_q\.weight"/);
    void t;
  });

  test("a diffusers-named VAE file passes through, and an LDM VAE-only file converts", () => {
    const bytes = fixture("models/tiny/diffusion_pytorch_model.safetensors");
    const tiny = readSafetensors(bytes, "tiny").tensors;
    const direct = convertSingleFile(bytes, "tiny");
    sameKeysAndShapes(direct.stateDict, tiny);
    expect(pick(direct.config)).toEqual(pick(json("models/tiny/config.json"), DIFFUSERS_DEFAULTS));

    // Re-save the SD file's VAE without prefix (like vae-ft-mse-840000.safetensors) and read it back.
    const sd = readSafetensors(fixture("models/sdlike-single-file.safetensors"), "sd", {
      filter: (n) => n.startsWith("first_stage_model."),
    }).tensors;
    const vaeOnly = new Map([...sd].map(([k, v]) => [k.slice("first_stage_model.".length), v]));
    vaeOnly.set("loss.logvar", new Tensor([0], []));
    const converted = convertSingleFile(writeSafetensors(vaeOnly), "vae-only");
    sameKeysAndShapes(converted.stateDict, sdlike);
  });

  test("files without VAE tensors are refused by name", () => {
    const bytes = writeSafetensors({ "model.diffusion_model.x": new Tensor([1], [1]) });
    expect(() => convertSingleFile(bytes, "unet.safetensors")).toThrow(AutoencoderKLError);
    expect(() => convertSingleFile(bytes, "unet.safetensors")).toThrow(
      /unet\.safetensors: no VAE tensors.*model\.diffusion_model\.x/,
    );
  });

  test("config inference from shapes", () => {
    const variants = json("models/variants/config.json");
    // Build shapes for the variants model: no quant convs, no attention, 16 latent channels.
    const shapes = new Map<string, { shape: number[] }>([
      ["encoder.conv_in.weight", { shape: [32, 3, 3, 3] }],
      ["encoder.down_blocks.0.resnets.0.conv1.weight", { shape: [32, 32, 3, 3] }],
      ["encoder.down_blocks.1.resnets.0.conv1.weight", { shape: [64, 32, 3, 3] }],
      ["encoder.conv_out.weight", { shape: [32, 64, 3, 3] }],
      ["decoder.conv_in.weight", { shape: [64, 16, 3, 3] }],
      ["decoder.conv_out.weight", { shape: [3, 32, 3, 3] }],
    ]);
    const c = inferVaeConfig(shapes);
    expect(pick(c)).toEqual(pick(variants));
    expect(() => inferVaeConfig(new Map([["encoder.conv_in.weight", { shape: [32, 3, 3, 3] }]]), "x.ckpt")).toThrow(
      /x\.ckpt: cannot infer block_out_channels/,
    );
    // 48 and 80 channels: 32 groups don't divide them, 16 do.
    const odd = new Map(shapes);
    odd.set("encoder.down_blocks.0.resnets.0.conv1.weight", { shape: [48, 3, 3, 3] });
    odd.set("encoder.down_blocks.1.resnets.0.conv1.weight", { shape: [80, 48, 3, 3] });
    expect(inferVaeConfig(odd).norm_num_groups).toBe(16);
  });
});

describe("PyTorch checkpoints", () => {
  const tiny = readSafetensors(fixture("models/tiny/diffusion_pytorch_model.safetensors"), "tiny").tensors;

  for (const file of ["tiny.ckpt", "tiny-legacy.ckpt"]) {
    test(`${file} yields exactly the tiny weights`, async () => {
      expect(detectSingleFileFormat(fixture(`models/tiny-ckpt/${file}`))).toBe("torch");
      const { stateDict, config } = await readSingleFile(path(`models/tiny-ckpt/${file}`));
      sameKeysAndShapes(stateDict, tiny);
      for (const [k, t] of tiny) expect(maxAbsDiff(stateDict.get(k)!.data, t.data), k).toBe(0);
      expect(pick(config)).toEqual(pick(json("models/tiny/config.json"), DIFFUSERS_DEFAULTS));
    });
  }

  test("malicious.ckpt is refused before anything runs", async () => {
    await expect(readSingleFile(path("models/tiny-ckpt/malicious.ckpt"))).rejects.toThrow(
      /malicious\.ckpt: .*forbidden global builtins\.print/,
    );
    await expect(readSingleFile(path("models/tiny-ckpt/malicious.ckpt"))).rejects.toBeInstanceOf(AutoencoderKLError);
  });
});

describe("sources", () => {
  test("paths, URLs, bytes, ArrayBuffers and Blobs give the same result, with progress", async () => {
    const p = path("models/tiny-ckpt/tiny.ckpt");
    const bytes = fixture("models/tiny-ckpt/tiny.ckpt");
    const seen: [number, number | undefined][] = [];
    const a = await readSingleFile(p, { onProgress: (loaded, total) => seen.push([loaded, total]) });
    expect(seen.at(-1)![0]).toBe(seen.at(-1)![1]);
    expect(seen.at(-1)![0]).toBeGreaterThan(0);
    const b = await readSingleFile(new URL(`../fixtures/models/tiny-ckpt/tiny.ckpt`, import.meta.url));
    const c = await readSingleFile(bytes.slice().buffer);
    const d = await readSingleFile(new Blob([bytes]), { onProgress: () => {} });
    for (const r of [b, c, d]) expect([...r.stateDict.keys()]).toEqual([...a.stateDict.keys()]);
  });

  test("a missing file is an AutoencoderKLError naming it", async () => {
    await expect(readSingleFile("test/fixtures/nope.safetensors")).rejects.toThrow(/nope\.safetensors: no such file/);
  });
});

describe("ranged reads skip what isn't the VAE", () => {
  // The SD fixture's VAE (2.8 MB) plus an 8 MB stand-in for the UNet.
  const sd = readSafetensors(fixture("models/sdlike-single-file.safetensors"), "sd", {
    filter: (n) => n.startsWith("first_stage_model."),
  }).tensors;
  const big = new Map(sd);
  big.set("model.diffusion_model.big", new Tensor(new Float32Array(1 << 22), [1 << 22]));
  const file = writeSafetensors(big, undefined, { dtype: "F16" });
  const want = convertSingleFile(file, "whole");

  test("over http with Range support, only the header and VAE ranges are fetched", async () => {
    const { createServer } = await import("node:http");
    let served = 0;
    let requests = 0;
    const server = createServer((req, res) => {
      requests++;
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
      if (!m) {
        served += file.length;
        res.writeHead(200, { "content-length": String(file.length) });
        res.end(file);
        return;
      }
      const [s, e] = [Number(m[1]), Math.min(Number(m[2]), file.length - 1)];
      served += e - s + 1;
      res.writeHead(206, { "content-range": `bytes ${s}-${e}/${file.length}`, "content-length": String(e - s + 1) });
      res.end(file.subarray(s, e + 1));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    try {
      const progress: [number, number | undefined][] = [];
      const got = await readSingleFile(`http://127.0.0.1:${port}/sd.safetensors`, {
        onProgress: (l, t) => progress.push([l, t]),
      });
      expect([...got.stateDict.keys()]).toEqual([...want.stateDict.keys()]);
      for (const [k, t] of want.stateDict) expect(maxAbsDiff(got.stateDict.get(k)!.data, t.data), k).toBe(0);
      expect(served).toBeLessThan(file.length / 2);
      expect(requests).toBeLessThan(10); // neighbours coalesced
      expect(progress.at(-1)![0]).toBe(progress.at(-1)![1]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test("Blobs and local files take the same path", async () => {
    const got = await readSingleFile(new Blob([file]));
    expect([...got.stateDict.keys()]).toEqual([...want.stateDict.keys()]);
    const local = await readSingleFile(path("models/sdlike-single-file.safetensors"));
    const whole = convertSingleFile(fixture("models/sdlike-single-file.safetensors"), "whole");
    expect([...local.stateDict.keys()]).toEqual([...whole.stateDict.keys()]);
  });

  test("a corrupt header is still refused by name when read by ranges", async () => {
    const bad = file.slice();
    new DataView(bad.buffer).setUint32(0, bad.length, true);
    await expect(readSingleFile(new Blob([bad]))).rejects.toThrow(
      /blob: header length \d+ runs past the end of the file/,
    );
  });
});
