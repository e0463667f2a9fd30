// Each bad-input rule has its case; each case checks the error class and that the message names the culprit.
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AutoencoderKL, AutoencoderKLError, resolveConfig, Tensor } from "../src/index.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { FIXTURES, manifest } from "./helpers/fixtures.js";

const tiny = manifest.models.tiny.config;

function rejects(fn: () => unknown, ...culprits: (string | RegExp)[]) {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(AutoencoderKLError);
  for (const c of culprits) expect((error as Error).message).toMatch(c);
}

describe("config rules (rejected before any allocation, naming the field)", () => {
  const cases: [string, Record<string, unknown>, (string | RegExp)[]][] = [
    [
      "norm_num_groups must divide every block channel count",
      { norm_num_groups: 24 },
      ["norm_num_groups", "block_out_channels[0] = 32"],
    ],
    [
      "unknown down block type",
      { down_block_types: ["DownEncoderBlock2D", "CrossAttnDownBlock2D"] },
      ["down_block_types", "CrossAttnDownBlock2D"],
    ],
    [
      "unknown up block type",
      { up_block_types: ["UpDecoderBlock2D", "AttnUpBlock2D"] },
      ["up_block_types", "AttnUpBlock2D"],
    ],
    ["unknown act_fn", { act_fn: "tanh" }, ["act_fn", "tanh"]],
    [
      "down_block_types length disagrees",
      { down_block_types: ["DownEncoderBlock2D"] },
      ["down_block_types", "same length"],
    ],
    [
      "up_block_types length disagrees",
      { up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"] },
      ["up_block_types"],
    ],
    ["non-integer channel count", { block_out_channels: [32, 64.5] }, ["block_out_channels", "entry 1"]],
    ["negative channel count", { block_out_channels: [-32, 64] }, ["block_out_channels", "entry 0"]],
    ["empty block list", { block_out_channels: [] }, ["block_out_channels"]],
    ["non-integer layers_per_block", { layers_per_block: 1.5 }, ["layers_per_block"]],
    ["zero latent channels", { latent_channels: 0 }, ["latent_channels"]],
    ["negative in_channels", { in_channels: -3 }, ["in_channels"]],
    ["string sample_size", { sample_size: "32" }, ["sample_size"]],
    ["huge channel count (would allocate gigabytes)", { block_out_channels: [1 << 20, 64] }, ["block_out_channels"]],
    ["latents_mean of the wrong length", { latents_mean: [0, 1] }, ["latents_mean", "4 numbers"]],
    ["non-boolean use_quant_conv", { use_quant_conv: "yes" }, ["use_quant_conv"]],
    ["non-finite scaling_factor", { scaling_factor: null }, ["scaling_factor"]],
  ];
  for (const [rule, patch, culprits] of cases) {
    it(rule, () => rejects(() => resolveConfig({ ...tiny, ...patch }, "config.json"), "config.json", ...culprits));
  }
  it("a config that is not an object", () =>
    rejects(() => resolveConfig([1, 2], "config.json"), "config.json", "JSON object"));
  it("fills diffusers' defaults for absent fields", () => {
    const c = resolveConfig({});
    expect(c.block_out_channels).toEqual([64]);
    expect(c.use_quant_conv).toBe(true);
    expect(c.mid_block_add_attention).toBe(true);
    expect(c.shift_factor).toBeNull();
  });
  it("fromPretrained rejects a bad config.json by file and field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "akl-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...tiny, act_fn: "swiglu" }));
    copyFileSync(
      FIXTURES + "models/tiny/diffusion_pytorch_model.safetensors",
      join(dir, "diffusion_pytorch_model.safetensors"),
    );
    await expect(AutoencoderKL.fromPretrained(dir, { backend: "reference" })).rejects.toThrow(
      /config\.json.*act_fn.*swiglu/,
    );
  });
});

describe("weights rules (strict loading lists keys and shapes)", () => {
  async function loadWith(edit: (t: Map<string, Tensor>) => void, strict = false): Promise<unknown> {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "reference" });
    const sd = await vae.stateDict();
    vae.dispose();
    edit(sd);
    const dir = mkdtempSync(join(tmpdir(), "akl-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify(tiny));
    writeFileSync(join(dir, "diffusion_pytorch_model.safetensors"), writeSafetensors(sd));
    return AutoencoderKL.fromPretrained(dir, { backend: "reference", strict }).then(
      () => null,
      (e) => e,
    );
  }
  it("a missing tensor is named with its shape", async () => {
    const e = await loadWith((sd) => sd.delete("decoder.mid_block.attentions.0.to_k.weight"));
    expect(e).toBeInstanceOf(AutoencoderKLError);
    expect(String(e)).toMatch(/diffusion_pytorch_model\.safetensors/);
    expect(String(e)).toMatch(/missing keys \(1\): decoder\.mid_block\.attentions\.0\.to_k\.weight \[64, 64\]/);
  });
  it("an extra tensor is named (strict: true; by default it is a warning, test/loading-rules.test.ts)", async () => {
    const e = await loadWith((sd) => sd.set("encoder.extra.weight", new Tensor([1, 2], [2])), true);
    expect(e).toBeInstanceOf(AutoencoderKLError);
    expect(String(e)).toMatch(/unexpected keys \(1\): encoder\.extra\.weight \[2\]/);
  });
  it("a wrong-shaped tensor is named with both shapes", async () => {
    const e = await loadWith((sd) => sd.set("quant_conv.bias", new Tensor(new Float32Array(4), [4])));
    expect(e).toBeInstanceOf(AutoencoderKLError);
    expect(String(e)).toMatch(/wrong shapes \(1\): quant_conv\.bias: expected \[8\], got \[4\]/);
  });
  it("a folder without weights says which files it looked for", async () => {
    const dir = mkdtempSync(join(tmpdir(), "akl-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify(tiny));
    await expect(AutoencoderKL.fromPretrained(dir, { backend: "reference" })).rejects.toThrow(
      /diffusion_pytorch_model\.safetensors/,
    );
  });
  it("a folder without config.json is named", async () => {
    await expect(
      AutoencoderKL.fromPretrained(join(tmpdir(), "no-such-model-dir"), { backend: "reference" }),
    ).rejects.toThrow(/config\.json.*not found/);
  });
});

describe("input rules", () => {
  let vae: AutoencoderKL;
  const get = async () =>
    (vae ??= await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "reference" }));
  it("encode rejects a tensor of the wrong rank", async () => {
    await expect((await get()).encode(new Tensor(new Float32Array(3 * 8 * 8), [3, 8, 8]))).rejects.toThrow(
      /encode: x.*rank 4.*\[3, 8, 8\]/,
    );
  });
  it("encode rejects the wrong channel count", async () => {
    await expect((await get()).encode(Tensor.zeros([1, 4, 8, 8]))).rejects.toThrow(/encode: x.*4 channels.*expects 3/);
  });
  it("decode rejects the wrong latent channel count", async () => {
    await expect((await get()).decode(Tensor.zeros([1, 3, 8, 8]))).rejects.toThrow(/decode: z.*3 channels.*expects 4/);
  });
  it("encode rejects an image too small to downsample", async () => {
    await expect((await get()).encode(Tensor.zeros([1, 3, 1, 8]))).rejects.toThrow(/encode: x.*height and width ≥ 2/);
  });
  it("encode rejects something that is not a Tensor", async () => {
    await expect((await get()).encode({ data: [], shape: [1] } as unknown as Tensor)).rejects.toThrow(
      AutoencoderKLError,
    );
  });
  it("a Tensor whose data does not fit its shape", () =>
    rejects(() => new Tensor(new Float32Array(5), [2, 3]), "Tensor", "5 elements", "needs 6"));
  it("a Tensor with a negative dimension", () =>
    rejects(() => new Tensor(new Float32Array(0), [2, -1]), "Tensor", "shape[1]"));
  it("an unknown backend", async () => {
    await expect(AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "cuda" as never })).rejects.toThrow(
      /options\.backend.*cuda/,
    );
  });
  it("a disposed model", async () => {
    const v = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "reference" });
    v.dispose();
    await expect(v.decode(Tensor.zeros([1, 4, 4, 4]))).rejects.toThrow(/disposed/);
  });
});
