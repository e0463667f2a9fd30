// The command line, spawned as users run it: `node bin/autoencoderkl.mjs` (the package's bin), from the
// TypeScript sources (AUTOENCODERKL_FROM_SOURCE=1) so the test never runs a stale dist/. Small images keep
// it quick; one full-size roundtrip checks the PSNR promised in assets/README.md.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { Tensor } from "../src/tensor/tensor.js";
import { cropTo, decodeImage, readImage, writePng } from "../src/io/image/index.js";

const BIN = fileURLToPath(new URL("../bin/autoencoderkl.mjs", import.meta.url));
const ASSETS = fileURLToPath(new URL("../assets/", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

let dir: string;

function cli(args: string[], timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: dir, timeout, env: { ...process.env, AUTOENCODERKL_FROM_SOURCE: "1" }, maxBuffer: 1 << 24 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        let json: Record<string, unknown> = {};
        const line = stdout.trim().split("\n").pop() ?? "";
        if (line.startsWith("{")) json = JSON.parse(line) as Record<string, unknown>;
        resolve({ code, stdout, stderr, json });
      },
    );
  });
}

/** The small test picture: a 37×21 crop of the demo photo (neither side a multiple of 8). */
const SMALL_W = 37, SMALL_H = 21;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "autoencoderkl-cli-"));
  const photo = readImage(readFileSync(join(ASSETS, "chelsea.png")));
  // From the middle of the photo (the cat's face), where there is detail.
  const [, , H, W] = photo.shape;
  const x0 = 200, y0 = 120;
  const crop = new Float32Array(3 * SMALL_H * SMALL_W);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < SMALL_H; y++) {
      for (let x = 0; x < SMALL_W; x++) crop[(c * SMALL_H + y) * SMALL_W + x] = photo.data[(c * H + y0 + y) * W + x0 + x];
    }
  }
  writeFileSync(join(dir, "small.png"), writePng(new Tensor(crop, [1, 3, SMALL_H, SMALL_W])));
  writeFileSync(join(dir, "notes.txt"), "not an image\n");
  mkdirSync(join(dir, "empty-model"));
  mkdirSync(join(dir, "bad-config"));
  writeFileSync(join(dir, "bad-config", "config.json"), "{ not json");
  mkdirSync(join(dir, "no-weights"));
  writeFileSync(join(dir, "no-weights", "config.json"), readFileSync(join(ASSETS, "demo-vae", "config.json")));
  // Quiet the WebGPU probe (no GPU in CI) and keep the 2-core machine for one process.
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Options every model-running test uses: the wasm kernels, two threads. */
const FAST = ["--backend", "wasm", "--threads", "2"];

describe("help and argument errors", () => {
  it("--help lists every command; each command has its own --help; --version", async () => {
    const r = await cli(["--help"]);
    expect(r.code, r.stderr).toBe(0);
    for (const c of ["roundtrip", "encode", "decode", "info", "bench", "--model", "--backend", "--threads", "--tile", "--json"]) expect(r.stdout).toContain(c);
    const sub = await cli(["encode", "--help"]);
    expect(sub.code, sub.stderr).toBe(0);
    expect(sub.stdout).toMatch(/Usage: autoencoderkl encode <image>/);
    expect(sub.stdout).toContain("--raw");
    const v = await cli(["--version"]);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("no command → usage, exit 2; unknown command, unknown option, bad values → exit 2 with the reason", async () => {
    const none = await cli([]);
    expect(none.code, none.stderr).toBe(2);
    expect(none.stdout).toContain("Usage: autoencoderkl <command>");
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["roundtrip", "--bogus"], /Unknown option '--bogus'/],
      [["roundtrip", "small.png", "--threads", "many"], /--threads must be an integer from 1 to 256, got "many"/],
      [["roundtrip", "small.png", "--backend", "cuda"], /--backend must be one of auto, wasm, webgpu, reference, got "cuda"/],
      [["roundtrip", "a.png", "b.png"], /at most one image/],
      [["encode"], /encode needs exactly one image/],
      [["decode"], /decode needs exactly one latents file/],
      [["encode", "small.png", "--seed", "3"], /--seed only applies with --sample/],
      [["info", "--size", "big"], /--size must be a size like 512 or 768x512/],
      [["bench", "--repeat", "0"], /--repeat must be an integer from 1 to 100/],
      [["roundtrip", "small.png", "--tile-size", "40", "--backend", "wasm"], /--tile-size must be a multiple of 32 for this model, got 40/],
      [["decode", "x.safetensors", "--raw", "--scaled"], /contradict/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(msg);
    }
  });
});

describe("file and model errors → exit 1 with the file and the rule", () => {
  it("missing image, not an image, a folder as image", async () => {
    const missing = await cli(["roundtrip", "nope.png", ...FAST]);
    expect(missing.code, missing.stderr).toBe(1);
    expect(missing.stderr).toMatch(/nope\.png: cannot read an image: no such file/);
    const text = await cli(["encode", "notes.txt", ...FAST]);
    expect(text.code, text.stderr).toBe(1);
    expect(text.stderr).toMatch(/notes\.txt: is not a PNG or JPEG image/);
    const folder = await cli(["roundtrip", "empty-model", ...FAST]);
    expect(folder.code, folder.stderr).toBe(1);
    expect(folder.stderr).toMatch(/empty-model: cannot read an image: is a folder/);
  });

  it("image over --max-pixels", async () => {
    const r = await cli(["roundtrip", "small.png", "--max-pixels", "100", ...FAST]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/small\.png: PNG is 37×21 = 777 pixels, over the limit of 100/);
  });

  it("bad model folders and paths", async () => {
    const cases: [string[], RegExp][] = [
      [["roundtrip", "small.png", "--model", "does-not-exist"], /does-not-exist: not found: --model must be a diffusers VAE folder/],
      [["roundtrip", "small.png", "--model", "empty-model"], /config\.json: not found: a diffusers model folder needs config\.json/],
      [["roundtrip", "small.png", "--model", "bad-config"], /config\.json: is not valid UTF-8 JSON/],
      [["roundtrip", "small.png", "--model", "no-weights"], /no weights found/],
      [["info", "empty-model"], /not a diffusers model folder|config\.json/],
      [["info", "no-weights"], /no weights found/],
      [["roundtrip", "small.png", "--model", "notes.txt"], /notes\.txt/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli([...args, ...FAST]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(msg);
      expect(r.stderr).not.toMatch(/internal error/);
    }
  });

  it("decode: missing file, not safetensors, no latents tensor, wrong channels", async () => {
    writeFileSync(join(dir, "other.safetensors"), writeSafetensors({ a: new Tensor([1, 2], [2]), b: new Tensor([1], [1]) }));
    writeFileSync(join(dir, "wrong.safetensors"), writeSafetensors({ latents: Tensor.zeros([1, 4, 2, 2]) }));
    const cases: [string, RegExp][] = [
      ["missing.safetensors", /missing\.safetensors: cannot read a latents file: no such file/],
      ["notes.txt", /notes\.txt: /],
      ["other.safetensors", /has no tensor named "latents"/],
      ["wrong.safetensors", /decode: z/],
    ];
    for (const [file, msg] of cases) {
      const r = await cli(["decode", file, ...FAST]);
      expect(r.code, file).toBe(1);
      expect(r.stderr, file).toMatch(msg);
    }
  });

  it("--json errors are one JSON line on stdout too", async () => {
    const r = await cli(["roundtrip", "nope.png", "--json", ...FAST]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.json).toMatchObject({ ok: false, exitCode: 1, source: "nope.png" });
    const u = await cli(["roundtrip", "--bogus", "--json"]);
    expect(u.code, u.stderr).toBe(2);
    expect(u.json).toMatchObject({ ok: false, exitCode: 2 });
  });
});

describe("commands", () => {
  it("roundtrip: writes the reconstruction (cropped back to 37×21) and a side-by-side comparison", async () => {
    const r = await cli(["roundtrip", "small.png", "-o", "small-out.png", "--compare", "cmp.png", "--json", ...FAST]);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, command: "roundtrip", width: SMALL_W, height: SMALL_H, backend: "wasm", posterior: "mode" });
    expect(r.json.psnr).toBeGreaterThan(15);
    const out = decodeImage(readFileSync(join(dir, "small-out.png")));
    expect([out.width, out.height]).toEqual([SMALL_W, SMALL_H]);
    const cmp = decodeImage(readFileSync(join(dir, "cmp.png")));
    expect([cmp.width, cmp.height]).toEqual([3 * SMALL_W + 8, SMALL_H]);
    // Left panel is the original, exactly.
    const orig = readImage(readFileSync(join(dir, "small.png")));
    const left = cropTo(new Tensor(cmp.data, [1, 3, SMALL_H, cmp.width]), SMALL_H, SMALL_W);
    expect(Array.from(left.data)).toEqual(Array.from(orig.data));
  });

  it("roundtrip text output: PSNR, timings, default output name; tiling", async () => {
    const r = await cli(["roundtrip", "small.png", "--tile", "--tile-size", "32", ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PSNR \d+\.\d\d dB {2}\(37×21, wasm backend\)$/m);
    expect(r.stdout).toMatch(/time: load .*, encode .*, decode .*/);
    expect(existsSync(join(dir, "small-roundtrip.png"))).toBe(true);
  });

  it("encode → decode: scaled latents with metadata; --raw; seeded --sample is reproducible", async () => {
    const enc = await cli(["encode", "small.png", "-o", "z.safetensors", "--json", ...FAST]);
    expect(enc.code, enc.stderr).toBe(0);
    const file = readSafetensors(new Uint8Array(readFileSync(join(dir, "z.safetensors"))));
    const z = file.tensors.get("latents")!;
    expect(z.shape).toEqual([1, 16, 3, 5]); // 37×21 padded to 40×24, ÷8
    expect(file.metadata).toMatchObject({ latents: "scaled", scaling_factor: "0.27567", shift_factor: "null", posterior: "mode", image_width: "37", image_height: "21" });

    const raw = await cli(["encode", "small.png", "-o", "zraw.safetensors", "--raw", ...FAST]);
    expect(raw.code, raw.stderr).toBe(0);
    const zr = readSafetensors(new Uint8Array(readFileSync(join(dir, "zraw.safetensors"))));
    expect(zr.metadata.latents).toBe("raw");
    const zRaw = zr.tensors.get("latents")!;
    for (let i = 0; i < z.size; i += 7) expect(z.data[i]).toBeCloseTo(zRaw.data[i] * 0.27567, 5);

    const dec = await cli(["decode", "z.safetensors", "-o", "fromz.png", "--json", ...FAST]);
    expect(dec.code, dec.stderr).toBe(0);
    expect(dec.json).toMatchObject({ unscaled: true, width: SMALL_W, height: SMALL_H });
    const decRaw = await cli(["decode", "zraw.safetensors", "-o", "fromzraw.png", ...FAST]);
    expect(decRaw.code, decRaw.stderr).toBe(0);
    const a = readImage(readFileSync(join(dir, "fromz.png"))), b = readImage(readFileSync(join(dir, "fromzraw.png")));
    let maxDiff = 0;
    for (let i = 0; i < a.size; i++) maxDiff = Math.max(maxDiff, Math.abs(a.data[i] - b.data[i]));
    expect(maxDiff).toBeLessThanOrEqual(1.01 / 127.5); // same picture up to float rounding

    const s1 = await cli(["encode", "small.png", "-o", "s1.safetensors", "--sample", "--seed", "3", ...FAST]);
    const s2 = await cli(["encode", "small.png", "-o", "s2.safetensors", "--sample", "--seed", "3", ...FAST]);
    const s3 = await cli(["encode", "small.png", "-o", "s3.safetensors", "--sample", "--seed", "4", ...FAST]);
    expect([s1.code, s2.code, s3.code], s1.stderr + s2.stderr + s3.stderr).toEqual([0, 0, 0]);
    const read = (f: string) => readSafetensors(new Uint8Array(readFileSync(join(dir, f))));
    expect(read("s1.safetensors").metadata).toMatchObject({ posterior: "sample", seed: "3" });
    expect(Array.from(read("s1.safetensors").tensors.get("latents")!.data)).toEqual(Array.from(read("s2.safetensors").tensors.get("latents")!.data));
    expect(Array.from(read("s1.safetensors").tensors.get("latents")!.data)).not.toEqual(Array.from(read("s3.safetensors").tensors.get("latents")!.data));
  });

  it("decode of foreign latents (no metadata): raw by default, --scaled undoes the config's factor", async () => {
    const zRaw = readSafetensors(new Uint8Array(readFileSync(join(dir, "zraw.safetensors")))).tensors.get("latents")!;
    const scaled = new Tensor(zRaw.data.map((v) => v * 0.27567), zRaw.shape);
    writeFileSync(join(dir, "foreign.safetensors"), writeSafetensors({ x: scaled }));
    const r = await cli(["decode", "foreign.safetensors", "--scaled", "-o", "foreign.png", "--json", ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ unscaled: true, width: 40, height: 24 }); // no recorded size: not cropped
    const plain = await cli(["decode", "foreign.safetensors", "-o", "foreign-raw.png", "--json", ...FAST]);
    expect(plain.json).toMatchObject({ unscaled: false });
  });

  it("info: config, parameters, dtypes, file size, memory estimate", async () => {
    const r = await cli(["info", "--json", "--size", "1024x768"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ kind: "diffusers folder", parameters: 3927027, dtypes: { F16: 184 }, fileBytes: 7873878 });
    expect((r.json.config as Record<string, unknown>).latent_channels).toBe(16);
    const mem = r.json.memory as Record<string, number>;
    expect(mem.width).toBe(1024);
    expect(mem.peak).toBeGreaterThan(mem.weights);
    const single = await cli(["info", join(ASSETS, "demo-vae", "diffusion_pytorch_model.safetensors"), "--json"]);
    expect(single.code, single.stderr).toBe(0);
    expect(single.json).toMatchObject({ kind: "single file", parameters: 3927027, dtypes: { F16: 184 } });
    const text = await cli(["info", join(ASSETS, "demo-vae")]);
    expect(text.stdout).toMatch(/parameters +3,927,027/);
    expect(text.stdout).toMatch(/184 × F16/);
    expect(text.stdout).toMatch(/memory +≈ .* peak for 512×512/);
  });

  it("bench: times encode and decode at the sizes asked", async () => {
    const r = await cli(["bench", "--sizes", "16,32x24", "--json", ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    const results = r.json.results as { width: number; height: number; encodeMs: number; decodeMs: number }[];
    expect(results.map((x) => [x.width, x.height])).toEqual([[16, 16], [32, 24]]);
    for (const x of results) expect(x.encodeMs).toBeGreaterThanOrEqual(0);
  });

  it("Ctrl-C stops a run at once, even while kernels hold the main thread, and writes nothing", async () => {
    // One thread: the kernels run synchronously on the main thread, the case a signal handler could not serve.
    const child = execFile(process.execPath, [BIN, "roundtrip", "--backend", "wasm", "--threads", "1", "-o", "never.png"], {
      cwd: dir,
      env: { ...process.env, AUTOENCODERKL_FROM_SOURCE: "1" },
      timeout: 60_000,
    });
    const exited = new Promise<[number | null, string | null]>((r) => child.on("exit", (c, sig) => r([c, sig])));
    await new Promise((r) => setTimeout(r, 2000));
    const t0 = Date.now();
    child.kill("SIGINT");
    const [code, signal] = await exited;
    expect([code, signal]).toEqual([null, "SIGINT"]);
    expect(Date.now() - t0).toBeLessThan(5000); // "at once", with slack for a loaded machine
    expect(existsSync(join(dir, "never.png"))).toBe(false);
  });

  it("the bundled demo: `roundtrip` with no arguments gives the PyTorch PSNR (25.02 dB) within 0.05 dB", async () => {
    const r = await cli(["roundtrip", "--json", ...FAST], 240_000);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ width: 448, height: 296, backend: "wasm" });
    expect(Math.abs((r.json.psnrExact as number) - 25.02)).toBeLessThan(0.05);
    expect(existsSync(join(dir, "chelsea-roundtrip.png"))).toBe(true);
  }, 300_000);
});
