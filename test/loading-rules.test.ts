// diffusers' loading rules (issue 14): what diffusers loads, we load — deprecated attention names in
// folders, unexpected tensors with a warning (strict: true rejects) — and URL objects wherever paths go.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AutoencoderKL, AutoencoderKLError, Tensor } from "../src/index.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { FIXTURES, manifest } from "./helpers/fixtures.js";
import { type StaticServer, startStaticServer } from "./helpers/static-server.js";

const TINY = resolve(FIXTURES, "models/tiny");
const tinyConfig = manifest.models.tiny.config;
const tinyWeights = () =>
  readSafetensors(new Uint8Array(readFileSync(join(TINY, "diffusion_pytorch_model.safetensors")))).tensors;

const dirs: string[] = [];
/** A diffusers folder with the tiny config and these tensors. */
function folder(tensors: Map<string, Tensor>): string {
  const dir = mkdtempSync(join(tmpdir(), "akl-rules-"));
  dirs.push(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(tinyConfig));
  writeFileSync(join(dir, "diffusion_pytorch_model.safetensors"), writeSafetensors(tensors));
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Same weights, read back: the strongest check that a load put every tensor where it belongs. */
async function expectSameWeights(vae: AutoencoderKL, want: Map<string, Tensor>): Promise<void> {
  const got = await vae.stateDict();
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, t] of want) expect(Array.from(got.get(k)!.data), k).toEqual(Array.from(t.data));
}

const LEGACY: Record<string, string> = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };

describe("deprecated attention names (query/key/value/proj_attn) in a diffusers folder", () => {
  it("are converted as diffusers converts them, with one warning", async () => {
    const want = tinyWeights();
    const legacy = new Map<string, Tensor>();
    for (const [k, t] of want)
      legacy.set(
        k.replace(/\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./, (_, n: string) => `.attentions.0.${LEGACY[n]}.`),
        t,
      );
    expect([...legacy.keys()].filter((k) => /\.(query|proj_attn)\./.test(k)).length).toBeGreaterThan(0);
    const warnings: string[] = [];
    const vae = await AutoencoderKL.fromPretrained(folder(legacy), {
      backend: "reference",
      onWarning: (m) => warnings.push(m),
    });
    await expectSameWeights(vae, want);
    vae.dispose();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/converted 16 deprecated attention weight names/);
  });

  it("a folder with both names for one weight is refused, naming both", async () => {
    const sd = tinyWeights();
    sd.set("encoder.mid_block.attentions.0.query.weight", sd.get("encoder.mid_block.attentions.0.to_q.weight")!);
    await expect(AutoencoderKL.fromPretrained(folder(sd), { backend: "reference" })).rejects.toThrow(
      /tensors "encoder\.mid_block\.attentions\.0\.(query|to_q)\.weight" and "encoder\.mid_block\.attentions\.0\.(to_q|query)\.weight" both map to "encoder\.mid_block\.attentions\.0\.to_q\.weight"/,
    );
  });
});

describe("unexpected tensors: a warning (as diffusers), or a rejection with strict: true", () => {
  const withExtra = () => {
    const sd = tinyWeights();
    sd.set("encoder.extra.weight", new Tensor([1, 2], [2]));
    return sd;
  };

  it("load, and onWarning names the tensor once", async () => {
    const warnings: string[] = [];
    const vae = await AutoencoderKL.fromPretrained(folder(withExtra()), {
      backend: "reference",
      onWarning: (m) => warnings.push(m),
    });
    await expectSameWeights(vae, tinyWeights());
    vae.dispose();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /diffusion_pytorch_model\.safetensors: ignored tensors the model does not use: unexpected keys \(1\): encoder\.extra\.weight \[2\]/,
    );
  });

  it("are silent in the library without onWarning (nothing on the console)", async () => {
    const spies = (["warn", "log", "error", "info"] as const).map((m) =>
      vi.spyOn(console, m).mockImplementation(() => {}),
    );
    const stderr = vi.spyOn(process.stderr, "write");
    try {
      const vae = await AutoencoderKL.fromPretrained(folder(withExtra()), { backend: "reference" });
      vae.dispose();
      for (const s of spies) expect(s).not.toHaveBeenCalled();
      expect(stderr.mock.calls.filter((c) => /extra/.test(String(c[0])))).toEqual([]);
    } finally {
      for (const s of spies) s.mockRestore();
      stderr.mockRestore();
    }
  });

  it("strict: true rejects them by name, as before", async () => {
    const e = await AutoencoderKL.fromPretrained(folder(withExtra()), { backend: "reference", strict: true }).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(AutoencoderKLError);
    expect(String(e)).toMatch(/unexpected keys \(1\): encoder\.extra\.weight \[2\]/);
  });

  it("missing and wrong-shaped tensors are refused even when not strict", async () => {
    const sd = withExtra();
    sd.delete("quant_conv.bias");
    const warnings: string[] = [];
    const e = await AutoencoderKL.fromPretrained(folder(sd), {
      backend: "reference",
      onWarning: (m) => warnings.push(m),
    }).then(
      () => null,
      (x: unknown) => x,
    );
    expect(String(e)).toMatch(/missing keys \(1\): quant_conv\.bias/);
    expect(String(e)).not.toMatch(/unexpected/);
  });

  it("single files follow the same rule", async () => {
    const bytes = writeSafetensors(withExtra());
    const warnings: string[] = [];
    const vae = await AutoencoderKL.fromSingleFile(bytes, {
      backend: "reference",
      config: { norm_num_groups: tinyConfig.norm_num_groups },
      onWarning: (m) => warnings.push(m),
    });
    vae.dispose();
    expect(warnings.join("\n")).toMatch(/encoder\.extra\.weight/);
    await expect(
      AutoencoderKL.fromSingleFile(bytes, {
        backend: "reference",
        config: { norm_num_groups: tinyConfig.norm_num_groups },
        strict: true,
      }),
    ).rejects.toThrow(/unexpected keys \(1\): encoder\.extra\.weight/);
  });

  it("bad option types are refused by name", async () => {
    await expect(
      AutoencoderKL.fromPretrained(TINY, { backend: "reference", onWarning: "stderr" as never }),
    ).rejects.toThrow(/options\.onWarning: must be a function/);
    await expect(AutoencoderKL.fromPretrained(TINY, { backend: "reference", strict: "yes" as never })).rejects.toThrow(
      /options\.strict: must be true or false/,
    );
  });
});

describe("URL objects work wherever a path or URL string does", () => {
  let server: StaticServer;
  beforeAll(async () => {
    server = await startStaticServer(FIXTURES);
  });
  afterAll(() => server.close());

  it("fromPretrained: file: URL object and string, with and without a trailing slash", async () => {
    const want = tinyWeights();
    for (const src of [pathToFileURL(TINY + "/"), pathToFileURL(TINY), pathToFileURL(TINY).href]) {
      const vae = await AutoencoderKL.fromPretrained(src, { backend: "reference" });
      await expectSameWeights(vae, want);
      vae.dispose();
    }
    const sub = await AutoencoderKL.fromPretrained(pathToFileURL(resolve(FIXTURES, "models")), {
      backend: "reference",
      subfolder: "tiny",
    });
    sub.dispose();
  });

  it("fromPretrained: http URL object", async () => {
    const vae = await AutoencoderKL.fromPretrained(new URL("models/tiny/", server.url), { backend: "reference" });
    await expectSameWeights(vae, tinyWeights());
    vae.dispose();
    expect(server.requests).toContain("/models/tiny/config.json");
  });

  it("fromSingleFile: file: URL object and string, http URL object", async () => {
    const file = resolve(FIXTURES, "models/tiny/diffusion_pytorch_model.safetensors");
    const opts = { backend: "reference" as const, config: { norm_num_groups: tinyConfig.norm_num_groups } };
    for (const src of [
      pathToFileURL(file),
      pathToFileURL(file).href,
      new URL("models/tiny/diffusion_pytorch_model.safetensors", server.url),
    ]) {
      const vae = await AutoencoderKL.fromSingleFile(src, opts);
      await expectSameWeights(vae, tinyWeights());
      vae.dispose();
    }
  });

  it("savePretrained: a file: URL object; an http URL is refused by name", async () => {
    const vae = await AutoencoderKL.fromPretrained(TINY, { backend: "reference" });
    const dir = mkdtempSync(join(tmpdir(), "akl-save-"));
    dirs.push(dir);
    await vae.savePretrained(pathToFileURL(dir));
    const back = await AutoencoderKL.fromPretrained(dir, { backend: "reference" });
    await expectSameWeights(back, tinyWeights());
    back.dispose();
    await expect(vae.savePretrained(new URL("http://127.0.0.1:1/x/"))).rejects.toThrow(
      /savePretrained writes a local folder/,
    );
    vae.dispose();
  });

  it("unsupported schemes and a missing folder are named", async () => {
    await expect(
      AutoencoderKL.fromPretrained(new URL("ftp://example.invalid/vae/"), { backend: "reference" }),
    ).rejects.toThrow(/unsupported URL scheme ftp:/);
    await expect(
      AutoencoderKL.fromPretrained(pathToFileURL(join(tmpdir(), "no-such-vae-dir")), { backend: "reference" }),
    ).rejects.toThrow(/no-such-vae-dir\/config\.json: not found/);
  });
});

describe("the bundled demo model from the library", () => {
  it("demoModelPath() (autoencoderkl/node) is a diffusers folder fromPretrained loads; the core import stays free of Node built-ins", async () => {
    const { demoModelPath, demoImagePath } = await import("../src/node.js");
    const vae = await AutoencoderKL.fromPretrained(demoModelPath(), { backend: "reference" });
    expect(vae.config.latent_channels).toBe(16);
    vae.dispose();
    expect(readFileSync(demoImagePath()).subarray(1, 4).toString()).toBe("PNG");
    const pkg = JSON.parse(readFileSync(resolve(FIXTURES, "../../package.json"), "utf8")) as {
      exports: Record<string, unknown>;
    };
    expect(pkg.exports["./node"]).toMatchObject({ default: "./dist/node.js" });
    expect(pkg.exports["./assets/*"]).toBe("./assets/*");
    const core = readFileSync(resolve(FIXTURES, "../../src/index.ts"), "utf8");
    expect(core).not.toMatch(/node\.js"|from "node:/);
  });
});
