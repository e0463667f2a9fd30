// Every checkpoint users have: single files with and without a config, pickles, and save → load round trips.
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AutoencoderKL, AutoencoderKLError } from "../src/index.js";
import { compare, FIXTURES, loadCase, manifest } from "./helpers/fixtures.js";

const caseNamed = (name: string) => manifest.cases.find((c) => c.name === name)!;

describe("single files with the config inferred from the tensor shapes", () => {
  for (const [model, caseName] of [
    ["sdlike", "sdlike-forward-single-file"],
    ["tiny-ckpt", "tiny-ckpt-forward"],
    ["tiny-ckpt-legacy", "tiny-ckpt-legacy-forward"],
  ] as const) {
    it(`${caseName} without a config`, async () => {
      const m = manifest.models[model];
      const c = caseNamed(caseName);
      const vae = await AutoencoderKL.fromSingleFile(FIXTURES + m.single_file!.path, {
        // norm_num_groups cannot be read off the shapes (sdlike uses 16); everything else is inferred.
        config: model === "sdlike" ? { norm_num_groups: 16 } : undefined,
        backend: "reference",
      });
      try {
        for (const key of [
          "block_out_channels",
          "layers_per_block",
          "latent_channels",
          "in_channels",
          "out_channels",
          "use_quant_conv",
          "use_post_quant_conv",
          "mid_block_add_attention",
        ]) {
          expect(vae.config[key], key).toEqual((m.config as Record<string, unknown>)[key] ?? vae.config[key]);
        }
        const { input, expected } = loadCase(c);
        const { maxAbs } = compare((await vae.forward(input.x)).sample, expected.sample);
        expect(maxAbs).toBeLessThanOrEqual(c.tolerance.max_abs);
      } finally {
        vae.dispose();
      }
    });
  }

  it("accepts the bytes themselves", async () => {
    const bytes = new Uint8Array(readFileSync(FIXTURES + "models/tiny-ckpt/tiny.ckpt"));
    const vae = await AutoencoderKL.fromSingleFile(bytes, { backend: "reference" });
    expect(vae.config.block_out_channels).toEqual([32, 64]);
    vae.dispose();
  });

  it("refuses malicious.ckpt by naming the forbidden global, running nothing", async () => {
    const printed: unknown[] = [];
    const original = console.log;
    console.log = (...a: unknown[]) => printed.push(a);
    try {
      const e = await AutoencoderKL.fromSingleFile(FIXTURES + manifest.models["tiny-ckpt"].malicious!, {
        backend: "reference",
      }).then(
        () => null,
        (err) => err,
      );
      expect(e).toBeInstanceOf(AutoencoderKLError);
      expect(String(e)).toMatch(/malicious\.ckpt/);
      expect(String(e)).toMatch(/builtins\.print/);
    } finally {
      console.log = original;
    }
    expect(printed).toEqual([]);
  });
});

describe("savePretrained → fromPretrained", () => {
  for (const variant of [undefined, "fp16"] as const) {
    it(`gives bit-identical outputs (${variant ?? "fp32"})`, async () => {
      const src = variant ? "models/sdlike" : "models/tiny";
      const vae = await AutoencoderKL.fromPretrained(FIXTURES + src, { backend: "reference", variant });
      const dir = mkdtempSync(join(tmpdir(), "akl-save-"));
      await vae.savePretrained(dir, { variant });
      expect(readdirSync(dir).sort()).toEqual([
        "config.json",
        `diffusion_pytorch_model${variant ? ".fp16" : ""}.safetensors`,
      ]);
      const again = await AutoencoderKL.fromPretrained(dir, { backend: "reference", variant });
      try {
        expect(again.config).toEqual({
          ...vae.config,
          _class_name: "AutoencoderKL",
          _diffusers_version: vae.config._diffusers_version,
        });
        const a = await vae.stateDict(),
          b = await again.stateDict();
        for (const [k, t] of a) expect(compare(b.get(k)!, t).maxAbs, k).toBe(0);
        const { input } = loadCase(caseNamed(variant ? "sdlike-forward" : "tiny-forward"));
        const y1 = (await vae.forward(input.x)).sample,
          y2 = (await again.forward(input.x)).sample;
        expect(compare(y2, y1).maxAbs).toBe(0);
      } finally {
        vae.dispose();
        again.dispose();
      }
    });
  }
});
