// The footprint flags on the command line (issue 13): --components (decode loads only the decoder and encode
// only the encoder unless told otherwise; info counts one half), --max-memory and --exact (the model plans to a
// budget; info prints the plan). Spawned as users run it, from the TypeScript sources.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeImage, writePng } from "../src/io/image/index.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { Tensor } from "../src/tensor/tensor.js";

const BIN = fileURLToPath(new URL("../bin/autoencoderkl.mjs", import.meta.url));
const DEMO = fileURLToPath(new URL("../assets/demo-vae/", import.meta.url));
const FAST = ["--backend", "wasm", "--threads", "1"];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

let dir: string;
function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: dir, timeout: 120_000, env: { ...process.env, AUTOENCODERKL_FROM_SOURCE: "1" } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        const line = stdout.trim().split("\n").pop() ?? "";
        resolve({
          code,
          stdout,
          stderr,
          json: line.startsWith("{") ? (JSON.parse(line) as Record<string, unknown>) : {},
        });
      },
    );
  });
}

interface Plan {
  mode: string;
  tileSize: number | null;
  checkpointMiB: number | null;
  peakMiB: number;
  budgetMiB: number | null;
  workRatio: number;
  parts: { weightsMiB: number; workingMiB: number };
}

const isDecoderKey = (k: string) => k.startsWith("decoder.") || k.startsWith("post_quant_conv.");

/** The demo model with only one half's tensors: loading the other half must fail, loading this one must not. */
function halfFolder(name: string, keep: (key: string) => boolean): string {
  const all = readSafetensors(new Uint8Array(readFileSync(join(DEMO, "diffusion_pytorch_model.safetensors")))).tensors;
  const out = join(dir, name);
  mkdirSync(out);
  writeFileSync(join(out, "config.json"), readFileSync(join(DEMO, "config.json")));
  writeFileSync(
    join(out, "diffusion_pytorch_model.safetensors"),
    writeSafetensors(new Map([...all].filter(([k]) => keep(k)))),
  );
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "akl-cli-components-"));
  const data = new Float32Array(3 * 24 * 32).map((_, i) => Math.sin(i * 0.37));
  writeFileSync(join(dir, "in.png"), await writePng(new Tensor(data, [1, 3, 24, 32])));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("--components", () => {
  it("decode reads only the decoder by default, encode only the encoder; --components overrides", async () => {
    const decoderOnly = halfFolder("decoder-only", isDecoderKey);
    const encoderOnly = halfFolder("encoder-only", (k) => !isDecoderKey(k));

    const enc = await cli(["encode", "in.png", "-o", "z.safetensors", "--model", encoderOnly, ...FAST]);
    expect(enc.code, enc.stderr).toBe(0);
    const dec = await cli(["decode", "z.safetensors", "-o", "half.png", "--model", decoderOnly, ...FAST]);
    expect(dec.code, dec.stderr).toBe(0);
    // The same decode with the whole model gives the same PNG, byte for byte.
    const full = await cli(["decode", "z.safetensors", "-o", "full.png", "--components", "both", ...FAST]);
    expect(full.code, full.stderr).toBe(0);
    expect(readFileSync(join(dir, "half.png")).equals(readFileSync(join(dir, "full.png")))).toBe(true);

    // --components both on a half folder needs the missing half: refused by name.
    const both = await cli([
      "decode",
      "z.safetensors",
      "-o",
      "x.png",
      "--model",
      decoderOnly,
      "--components",
      "both",
      ...FAST,
    ]);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toMatch(/missing keys \(\d+\): encoder\./);
    // Decoding with the encoder alone names the flag to change.
    const wrong = await cli(["decode", "z.safetensors", "-o", "y.png", "--components", "encoder", ...FAST]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(
      /decode: this model was loaded with --components encoder.*--components decoder or both/,
    );
  });

  it("info counts the parameters and memory of one half", async () => {
    const all = await cli(["info", "--json"]);
    const dec = await cli(["info", "--json", "--components", "decoder"]);
    const enc = await cli(["info", "--json", "--components", "encoder"]);
    for (const r of [all, dec, enc]) expect(r.code, r.stderr).toBe(0);
    expect(all.json.components).toBe("both");
    expect(dec.json.components).toBe("decoder");
    const count = (keep: (k: string) => boolean) =>
      [...readSafetensors(new Uint8Array(readFileSync(join(DEMO, "diffusion_pytorch_model.safetensors")))).tensors]
        .filter(([k]) => keep(k))
        .reduce((n, [, t]) => n + t.size, 0);
    expect(dec.json.parameters).toBe(count(isDecoderKey));
    expect(enc.json.parameters).toBe(count((k) => !isDecoderKey(k)));
    expect((dec.json.parameters as number) + (enc.json.parameters as number)).toBe(all.json.parameters);
    const mem = (r: Run) => r.json.memory as { peak: number; weights: number; encode: Plan | null; decode: Plan };
    expect(mem(dec).encode).toBeNull();
    expect(mem(dec).peak).toBe(mem(dec).decode.peakMiB * 2 ** 20);
    expect(mem(dec).decode.parts.weightsMiB).toBeCloseTo(mem(dec).weights / 2 ** 20, 1);
    expect(mem(dec).peak).toBeLessThan(mem(all).peak);
    const text = await cli(["info", "--components", "decoder"]);
    expect(text.stdout).toMatch(/parameters +[\d,]+ \(--components decoder: post_quant_conv \+ decoder only\)/);
  });

  it("an unknown value is a usage error", async () => {
    const r = await cli(["decode", "z.safetensors", "--components", "unet"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--components must be one of decoder, encoder, both, got "unet"/);
  });
});

describe("--max-memory and --exact", () => {
  it("info prints the plan: untiled, the tiling asked for, or what fits the budget", async () => {
    const plans = async (...args: string[]) => {
      const r = await cli(["info", "--json", "--size", "1024", ...FAST, ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.json.memory as { encode: Plan; decode: Plan };
    };
    const untiled = await plans();
    expect(untiled.decode).toMatchObject({ mode: "untiled", budgetMiB: null, workRatio: 1 });
    const exact = await plans("--exact", "--tile-size", "256");
    // the command line keeps exact tiling's checkpoints in temporary files
    expect(exact.decode).toMatchObject({ mode: "exact", tileSize: 32, checkpointMiB: null, storedCheckpoints: true });
    expect(exact.encode).toMatchObject({ mode: "exact", tileSize: 256 });
    expect((await plans("--tile")).decode.mode).toBe("blend");
    // a budget between the smallest plan and untiled: exact tiling under it
    const budget = Math.floor((untiled.decode.peakMiB + untiled.decode.parts.weightsMiB + 60) / 2);
    const fitted = await plans("--max-memory", String(budget));
    expect(fitted.decode.mode).toBe("exact");
    expect(fitted.decode.budgetMiB).toBe(budget);
    expect(fitted.decode.peakMiB).toBeLessThanOrEqual(budget);
    const text = await cli(["info", "--size", "1024", "--max-memory", String(budget), ...FAST]);
    expect(text.stdout).toMatch(
      new RegExp(
        `memory +decode 1024×1024: exact tiling, \\d+-px tiles, (checkpoints ≤ \\d+ MiB|checkpoints in temporary files), ≈ [\\d.]+× the untiled work; predicted peak [\\d.]+ MiB \\(budget ${budget} MiB\\)`,
      ),
    );
    const tight = await cli(["info", "--size", "1024", "--max-memory", "16", ...FAST]);
    expect(tight.code, tight.stderr).toBe(0);
    expect(tight.stdout).toMatch(
      /memory +decode 1024×1024: does not fit: maxMemoryMiB 16 is too small .* Raise the budget to at least \d+ MiB/,
    );
  });

  it("decode under --max-memory or with --exact gives the untiled image; a budget nothing fits is refused", async () => {
    const data = new Float32Array(3 * 96 * 128).map((_, i) => Math.sin(i * 0.011) * Math.cos(i * 0.0007));
    writeFileSync(join(dir, "big.png"), await writePng(new Tensor(data, [1, 3, 96, 128])));
    const enc = await cli(["encode", "big.png", "-o", "m.safetensors", ...FAST]);
    expect(enc.code, enc.stderr).toBe(0);
    const plain = await cli(["decode", "m.safetensors", "-o", "plain.png", ...FAST]);
    expect(plain.code, plain.stderr).toBe(0);
    const exact = await cli(["decode", "m.safetensors", "-o", "exact.png", "--exact", "--tile-size", "16", ...FAST]);
    expect(exact.code, exact.stderr).toBe(0);
    const info = await cli(["info", "--json", "--size", "128x96", "--components", "decoder", ...FAST]);
    const untiled = (info.json.memory as { decode: Plan }).decode;
    const budget = Math.floor(untiled.peakMiB) - 1;
    const planned = await cli(["decode", "m.safetensors", "-o", "budget.png", "--max-memory", String(budget), ...FAST]);
    expect(untiled.mode).toBe("untiled");
    const tiled = ["exact.png"];
    if (typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function" || planned.code === 0) {
      expect(planned.code, planned.stderr).toBe(0);
      tiled.push("budget.png");
    } else {
      // Node 20 frees the tiler's host arrays only when the collector runs: the planner counts that lag, which
      // for the small demo model leaves the tiled plans within a MiB of the untiled one, or above it
      console.log("cli-components: Node 20: a budget just under untiled is refused (collector lag), not tiled");
      expect(planned.stderr).toMatch(
        new RegExp(
          `maxMemoryMiB ${budget} is too small .* the smallest plan is .* Raise the budget to at least \\d+ MiB`,
        ),
      );
    }
    // exact tiling reproduces the untiled values to float rounding; 8-bit pixels may differ by one step at most
    const pixels = async (f: string) => decodeImage(readFileSync(join(dir, f))).data;
    const ref = await pixels("plain.png");
    for (const f of tiled) {
      const got = await pixels(f);
      expect(got.length).toBe(ref.length);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
      expect(worst, f).toBeLessThanOrEqual(2 / 255 + 1e-6);
    }
    const refused = await cli(["decode", "m.safetensors", "-o", "no.png", "--max-memory", "16", ...FAST]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/maxMemoryMiB 16 is too small/);
    expect(existsSync(join(dir, "no.png"))).toBe(false);
    const bad = await cli(["decode", "m.safetensors", "--max-memory", "lots", ...FAST]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-memory must be an integer from 16/);
  });
});
