// --components on the command line (issue 13): decode loads only the decoder and encode only the encoder
// unless told otherwise, and info counts one half. Spawned as users run it, from the TypeScript sources.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writePng } from "../src/io/image/index.js";
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
    const mem = (r: Run) => r.json.memory as { peak: number; weights: number; decode: number };
    expect(mem(dec).peak).toBe(mem(dec).weights + mem(dec).decode);
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
