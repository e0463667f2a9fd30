// The command line, spawned as users run it: `node bin/autoencoderkl.mjs` (the package's bin), from the
// TypeScript sources (AUTOENCODERKL_FROM_SOURCE=1) so the test never runs a stale dist/. Small images keep
// it quick; full-size roundtrips of the bundled pictures check the PSNR figures in assets/README.md.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cropTo, decodeImage, readImage, writePng } from "../src/io/image/index.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { Tensor } from "../src/tensor/tensor.js";

const BIN = fileURLToPath(new URL("../bin/autoencoderkl.mjs", import.meta.url));
const ASSETS = fileURLToPath(new URL("../assets/", import.meta.url));
/** The demo model's scaling_factor, from its own config. */
const SCALE = (JSON.parse(readFileSync(join(ASSETS, "demo-vae", "config.json"), "utf8")) as { scaling_factor: number })
  .scaling_factor;

/** PyTorch's PSNR per bundled picture, from the table in assets/README.md (the figures the CLI must reproduce). */
function pytorchPsnr(): Map<string, number> {
  const table = new Map<string, number>();
  for (const m of readFileSync(join(ASSETS, "README.md"), "utf8").matchAll(
    /^\| ([\w-]+\.png) \| \d+×\d+ \| (\d+\.\d+) \|/gm,
  ))
    table.set(m[1], +m[2]);
  return table;
}

const sha = (f: string) =>
  createHash("sha256")
    .update(readFileSync(join(dir, f)))
    .digest("hex");
/** Temporary files left by an interrupted or failed write (there must never be any). */
const leftovers = () => readdirSync(dir).filter((f) => f.endsWith(".tmp"));

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
const SMALL_W = 37,
  SMALL_H = 21;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "autoencoderkl-cli-"));
  const photo = readImage(readFileSync(join(ASSETS, "chelsea.png")));
  // From the middle of the photo (the cat's face), where there is detail.
  const [, , H, W] = photo.shape;
  const x0 = 200,
    y0 = 120;
  const crop = new Float32Array(3 * SMALL_H * SMALL_W);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < SMALL_H; y++) {
      for (let x = 0; x < SMALL_W; x++)
        crop[(c * SMALL_H + y) * SMALL_W + x] = photo.data[(c * H + y0 + y) * W + x0 + x];
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
    for (const c of [
      "roundtrip",
      "encode",
      "decode",
      "info",
      "bench",
      "--model",
      "--backend",
      "--threads",
      "--tile",
      "--json",
    ])
      expect(r.stdout).toContain(c);
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
      [
        ["roundtrip", "small.png", "--backend", "cuda"],
        /--backend must be one of auto, wasm, webgpu, reference, got "cuda"/,
      ],
      [["roundtrip", "a.png", "b.png"], /at most one image/],
      [["encode"], /encode needs exactly one image/],
      [["decode"], /decode needs exactly one latents file/],
      [["encode", "small.png", "--seed", "3"], /--seed only applies with --sample/],
      [["info", "--size", "big"], /--size must be a size like 512 or 768x512/],
      [["bench", "--repeat", "0"], /--repeat must be an integer from 1 to 100/],
      [
        ["roundtrip", "small.png", "--tile-size", "40", "--backend", "wasm"],
        /--tile-size must be a multiple of 32 for this model, got 40/,
      ],
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
      [
        ["roundtrip", "small.png", "--model", "does-not-exist"],
        /does-not-exist: not found: --model must be a diffusers VAE folder/,
      ],
      [
        ["roundtrip", "small.png", "--model", "empty-model"],
        /config\.json: not found: a diffusers model folder needs config\.json/,
      ],
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
    writeFileSync(
      join(dir, "other.safetensors"),
      writeSafetensors({ a: new Tensor([1, 2], [2]), b: new Tensor([1], [1]) }),
    );
    writeFileSync(join(dir, "wrong.safetensors"), writeSafetensors({ latents: Tensor.zeros([1, 4, 2, 2]) }));
    const cases: [string, RegExp][] = [
      ["missing.safetensors", /missing\.safetensors: cannot read a latents file: no such file/],
      ["notes.txt", /notes\.txt: not a safetensors file: it is a text file/],
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
    expect(r.json).toMatchObject({
      ok: true,
      command: "roundtrip",
      width: SMALL_W,
      height: SMALL_H,
      backend: "wasm",
      posterior: "mode",
    });
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
    expect(file.metadata).toMatchObject({
      latents: "scaled",
      scaling_factor: String(SCALE),
      shift_factor: "null",
      posterior: "mode",
      image_width: "37",
      image_height: "21",
    });

    const raw = await cli(["encode", "small.png", "-o", "zraw.safetensors", "--raw", ...FAST]);
    expect(raw.code, raw.stderr).toBe(0);
    const zr = readSafetensors(new Uint8Array(readFileSync(join(dir, "zraw.safetensors"))));
    expect(zr.metadata.latents).toBe("raw");
    const zRaw = zr.tensors.get("latents")!;
    for (let i = 0; i < z.size; i += 7) expect(z.data[i]).toBeCloseTo(zRaw.data[i] * SCALE, 5);

    const dec = await cli(["decode", "z.safetensors", "-o", "fromz.png", "--json", ...FAST]);
    expect(dec.code, dec.stderr).toBe(0);
    expect(dec.json).toMatchObject({ unscaled: true, width: SMALL_W, height: SMALL_H });
    const decRaw = await cli(["decode", "zraw.safetensors", "-o", "fromzraw.png", ...FAST]);
    expect(decRaw.code, decRaw.stderr).toBe(0);
    const a = readImage(readFileSync(join(dir, "fromz.png"))),
      b = readImage(readFileSync(join(dir, "fromzraw.png")));
    let maxDiff = 0;
    for (let i = 0; i < a.size; i++) maxDiff = Math.max(maxDiff, Math.abs(a.data[i] - b.data[i]));
    expect(maxDiff).toBeLessThanOrEqual(1.01 / 127.5); // same picture up to float rounding

    const s1 = await cli(["encode", "small.png", "-o", "s1.safetensors", "--sample", "--seed", "3", ...FAST]);
    const s2 = await cli(["encode", "small.png", "-o", "s2.safetensors", "--sample", "--seed", "3", ...FAST]);
    const s3 = await cli(["encode", "small.png", "-o", "s3.safetensors", "--sample", "--seed", "4", ...FAST]);
    expect([s1.code, s2.code, s3.code], s1.stderr + s2.stderr + s3.stderr).toEqual([0, 0, 0]);
    const read = (f: string) => readSafetensors(new Uint8Array(readFileSync(join(dir, f))));
    expect(read("s1.safetensors").metadata).toMatchObject({ posterior: "sample", seed: "3" });
    expect(Array.from(read("s1.safetensors").tensors.get("latents")!.data)).toEqual(
      Array.from(read("s2.safetensors").tensors.get("latents")!.data),
    );
    expect(Array.from(read("s1.safetensors").tensors.get("latents")!.data)).not.toEqual(
      Array.from(read("s3.safetensors").tensors.get("latents")!.data),
    );
  });

  it("decode of foreign latents (no metadata): raw by default, --scaled undoes the config's factor", async () => {
    const zRaw = readSafetensors(new Uint8Array(readFileSync(join(dir, "zraw.safetensors")))).tensors.get("latents")!;
    const scaled = new Tensor(
      zRaw.data.map((v) => v * SCALE),
      zRaw.shape,
    );
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
    expect(r.json).toMatchObject({
      kind: "diffusers folder",
      parameters: 3927027,
      dtypes: { F16: 184 },
      fileBytes: 7873878,
    });
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
    expect(text.stdout).toMatch(/memory +decode 512×512: untiled; predicted peak [\d.]+ MiB = runtime/);
  });

  it("bench: times encode and decode at the sizes asked", async () => {
    const r = await cli(["bench", "--sizes", "16,32x24", "--json", ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    const results = r.json.results as {
      width: number;
      height: number;
      encodeMs: number;
      decodeMs: number;
      cpuCores: number;
    }[];
    expect(results.map((x) => [x.width, x.height])).toEqual([
      [16, 16],
      [32, 24],
    ]);
    expect(r.json).toMatchObject({ isa: "relaxed", threads: 2 });
    for (const x of results) expect(x.cpuCores > 0 && x.cpuCores <= 2.5, String(x.cpuCores)).toBe(true);
    for (const x of results) {
      for (const ms of [x.encodeMs, x.decodeMs]) {
        expect(Number.isFinite(ms) && ms > 0, String(ms)).toBe(true);
        expect(ms).toBeLessThan(60_000);
      }
    }
    // A 32×24 pass does more work than a 16×16 one; the timings must at least be distinct measurements.
    expect(results[1].encodeMs + results[1].decodeMs).not.toBe(results[0].encodeMs + results[0].decodeMs);
  });

  it("Ctrl-C stops a run at once, even while kernels hold the main thread, and writes nothing", async () => {
    // One thread: the kernels run synchronously on the main thread, the case a signal handler could not serve.
    const child = execFile(
      process.execPath,
      [BIN, "roundtrip", "--backend", "wasm", "--threads", "1", "-o", "never.png"],
      {
        cwd: dir,
        env: { ...process.env, AUTOENCODERKL_FROM_SOURCE: "1" },
        timeout: 60_000,
      },
    );
    const exited = new Promise<[number | null, string | null]>((r) => child.on("exit", (c, sig) => r([c, sig])));
    // The model line is printed once the model is loaded, just before encoding starts: interrupt then.
    let stdout = "";
    await new Promise<void>((started, failed) => {
      child.stdout!.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (/^model: /m.test(stdout)) started();
      });
      child.on("exit", () => failed(new Error(`exited before the run started: ${stdout}`)));
    });
    const t0 = Date.now();
    child.kill("SIGINT");
    const [code, signal] = await exited;
    // Killed by the signal (status 130 in a shell) — had the run finished first, it would have exited 0.
    expect([code, signal]).toEqual([null, "SIGINT"]);
    expect(stdout).not.toMatch(/PSNR|wrote/);
    expect(Date.now() - t0).toBeLessThan(5000); // "at once", with slack for a loaded machine
    expect(existsSync(join(dir, "never.png"))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it("the bundled demo: `roundtrip` with no arguments gives PyTorch's PSNR on chelsea within 0.05 dB, and says which model ran", async () => {
    const want = pytorchPsnr().get("chelsea.png")!;
    expect(want).toBeGreaterThan(27); // the v2 demo model (v1 got 25.02)
    const r = await cli(["roundtrip", ...FAST], 240_000);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(/^model: /gm)).toHaveLength(1);
    expect(r.stdout).toMatch(/^model: the bundled demo VAE .*not a Stable Diffusion VAE/m);
    expect(r.stdout).toMatch(/--model <folder\|file\|url>/);
    const psnr = Number(/^PSNR (\d+\.\d+) dB {2}\(448×296, wasm backend\)$/m.exec(r.stdout)?.[1]);
    expect(Math.abs(psnr - want), `${psnr} vs PyTorch ${want}`).toBeLessThan(0.05);
    expect(existsSync(join(dir, "chelsea-roundtrip.png"))).toBe(true);
    const exact = await cli(["roundtrip", "-o", "chelsea-json.png", "--json", ...FAST], 240_000);
    expect(Math.abs((exact.json.psnrExact as number) - want)).toBeLessThan(0.05);
  }, 300_000);

  it("the bundled synthetic pictures come back at PyTorch's PSNR within 0.05 dB", async () => {
    const table = pytorchPsnr();
    const synth = [...table.keys()].filter((k) => k.startsWith("synth-"));
    expect(synth.sort()).toEqual(["synth-chart.png", "synth-poster.png", "synth-ui.png"]);
    for (const name of synth) {
      const r = await cli(["roundtrip", join(ASSETS, name), "-o", `rt-${name}`, "--json", ...FAST], 240_000);
      expect(r.code, r.stderr).toBe(0);
      expect(
        Math.abs((r.json.psnrExact as number) - table.get(name)!),
        `${name}: ${r.json.psnrExact} vs PyTorch ${table.get(name)}`,
      ).toBeLessThan(0.05);
    }
  }, 300_000);
});

describe("instruction set: relaxed SIMD by default, --isa simd on request", () => {
  // Node 20 validates relaxed SIMD only behind V8's flag (which NODE_OPTIONS refuses): the CLI sets it itself.
  const major = Number(process.versions.node.split(".")[0]);
  const how = major >= 22 ? "native" : "v8 flag";

  it(`info reports relaxed SIMD (${how} on Node ${major}); --isa simd reports plain SIMD`, async () => {
    const r = await cli(["info", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ isa: "relaxed", relaxedSimd: how, node: process.versions.node });
    const text = await cli(["info"]);
    expect(text.stdout).toMatch(/^wasm +relaxed SIMD \(/m);
    const plain = await cli(["info", "--json", "--isa", "simd"]);
    expect(plain.json).toMatchObject({ isa: "simd", relaxedSimd: "not asked" });
  });

  it("roundtrip runs the relaxed kernels on every thread by default, the plain ones with --isa simd; both report CPU use", async () => {
    const relaxed = await cli(["roundtrip", "small.png", "-o", "isa-relaxed.png", "--json", ...FAST]);
    expect(relaxed.code, relaxed.stderr).toBe(0);
    expect(relaxed.json).toMatchObject({ isa: "relaxed", threads: 2 });
    const plain = await cli(["roundtrip", "small.png", "-o", "isa-simd.png", "--json", "--isa", "simd", ...FAST]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.json).toMatchObject({ isa: "simd", threads: 2 });
    // fused multiply-adds round differently, but the reconstruction is the same picture
    expect(Math.abs((relaxed.json.psnrExact as number) - (plain.json.psnrExact as number))).toBeLessThan(0.01);
    for (const r of [relaxed, plain]) {
      const cores = r.json.cpuCores as number;
      expect(cores > 0 && cores <= 2.5, String(cores)).toBe(true);
    }
    const text = await cli(["roundtrip", "small.png", "-o", "isa-text.png", "--isa", "relaxed", ...FAST]);
    expect(text.stdout).toMatch(/^time: .*\(relaxed SIMD, 2 threads; CPU use \d+\.\d\d cores\)$/m);
  });

  it("--isa: bad values and non-wasm backends are usage errors", async () => {
    const bad = await cli(["roundtrip", "small.png", "--isa", "avx512"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--isa must be one of auto, relaxed, simd, got "avx512"/);
    const ref = await cli(["roundtrip", "small.png", "--isa", "simd", "--backend", "reference", "-o", "never-ref.png"]);
    expect(ref.code).toBe(2);
    expect(ref.stderr).toMatch(/--isa simd applies to the wasm backend, not --backend reference/);
    expect(existsSync(join(dir, "never-ref.png"))).toBe(false);
  });
});

describe("outputs: never over an existing file unless asked, never half-written", () => {
  it("encode: an existing default output is refused before the model runs; --force and -o replace it", async () => {
    mkdirSync(join(dir, "ow"));
    writeFileSync(join(dir, "ow", "small.png"), readFileSync(join(dir, "small.png")));
    writeFileSync(join(dir, "ow", "small.latents.safetensors"), "precious");
    const ow = (f: string) => join("ow", f);
    const r = await cli(["encode", ow("small.png"), ...FAST], 60_000);
    // Default names are relative to the working folder, not the input's.
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(dir, "small.latents.safetensors"))).toBe(true);
    const again = await cli(["encode", ow("small.png"), ...FAST]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /small\.latents\.safetensors: already exists: pass --force to overwrite it, or -o to name another file/,
    );
    expect(again.stdout).not.toMatch(/^model: /m); // refused before loading anything
    const before = sha("small.latents.safetensors");
    writeFileSync(join(dir, "small.latents.safetensors"), "old");
    const forced = await cli(["encode", ow("small.png"), "--force", ...FAST]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(sha("small.latents.safetensors")).toBe(before);
    writeFileSync(join(dir, "named.safetensors"), "old");
    const named = await cli(["encode", ow("small.png"), "-o", "named.safetensors", ...FAST]);
    expect(named.code, named.stderr).toBe(0);
    expect(sha("named.safetensors")).toBe(before);
    expect(readFileSync(join(dir, "ow", "small.latents.safetensors"), "utf8")).toBe("precious");
  });

  it("decode: writes <name>.decoded.png, so `encode x.png; decode x.latents.safetensors` never replaces x.png", async () => {
    mkdirSync(join(dir, "photo"));
    const cwd = join(dir, "photo");
    writeFileSync(join(cwd, "x.png"), readFileSync(join(dir, "small.png")));
    const original = createHash("sha256")
      .update(readFileSync(join(cwd, "x.png")))
      .digest("hex");
    const run = (args: string[]) =>
      new Promise<Run>((res) =>
        execFile(
          process.execPath,
          [BIN, ...args, ...FAST],
          { cwd, env: { ...process.env, AUTOENCODERKL_FROM_SOURCE: "1" }, timeout: 120_000 },
          (e, stdout, stderr) =>
            res({ code: e ? (typeof e.code === "number" ? e.code : -1) : 0, stdout, stderr, json: {} }),
        ),
      );
    expect((await run(["encode", "x.png"])).code).toBe(0);
    const d = await run(["decode", "x.latents.safetensors"]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/wrote .*x\.decoded\.png/);
    expect(
      createHash("sha256")
        .update(readFileSync(join(cwd, "x.png")))
        .digest("hex"),
    ).toBe(original);
    const again = await run(["decode", "x.latents.safetensors"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/x\.decoded\.png: already exists/);
    expect((await run(["decode", "x.latents.safetensors", "-f"])).code).toBe(0);
    expect(readdirSync(cwd).sort()).toEqual(["x.decoded.png", "x.latents.safetensors", "x.png"]);
  });

  it("roundtrip: default output and --compare follow the same rules", async () => {
    writeFileSync(join(dir, "keep-roundtrip.png"), "mine");
    writeFileSync(join(dir, "keep.png"), readFileSync(join(dir, "small.png")));
    const r = await cli(["roundtrip", "keep.png", ...FAST]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/keep-roundtrip\.png: already exists/);
    expect(readFileSync(join(dir, "keep-roundtrip.png"), "utf8")).toBe("mine");
    const f = await cli(["roundtrip", "keep.png", "--force", "--compare", "keep-cmp.png", ...FAST]);
    expect(f.code, f.stderr).toBe(0);
    expect(decodeImage(readFileSync(join(dir, "keep-roundtrip.png"))).width).toBe(SMALL_W);
    expect(decodeImage(readFileSync(join(dir, "keep-cmp.png"))).width).toBe(3 * SMALL_W + 8);
  });

  it("Ctrl-C while an output is being written leaves neither the file nor its temporary file", async () => {
    // The CLI's writer, on a file big enough that the write takes a while; SIGINT as soon as it starts.
    const child = join(dir, "write-child.mjs");
    writeFileSync(
      child,
      `import { register } from "node:module";
register(${JSON.stringify(new URL("../bin/ts-loader.mjs", import.meta.url).href)}, import.meta.url);
const { writeOutput } = await import(${JSON.stringify(new URL("../src/cli/output.ts", import.meta.url).href)});
const bytes = new Uint8Array(256 * 1024 * 1024).fill(7);
process.stdout.write("writing\\n");
await writeOutput({ path: ${JSON.stringify(join(dir, "big.bin"))}, mayReplace: true }, bytes);
process.stdout.write("done\\n");
`,
    );
    const proc = execFile(process.execPath, [child], { cwd: dir, timeout: 60_000 });
    let stdout = "";
    proc.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes("writing")) proc.kill("SIGINT");
    });
    const [code, signal] = await new Promise<[number | null, string | null]>((r) =>
      proc.on("exit", (c, sig) => r([c, sig])),
    );
    expect([code, signal, stdout]).toEqual([null, "SIGINT", "writing\n"]); // interrupted mid-write, not after
    expect(existsSync(join(dir, "big.bin"))).toBe(false);
    expect(leftovers()).toEqual([]);
    rmSync(child);
  });

  it("a write that fails leaves no file and no temporary file behind", async () => {
    mkdirSync(join(dir, "a-folder"));
    const r = await cli(["encode", "small.png", "-o", "a-folder", ...FAST]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/a-folder: cannot write: is a folder/);
    const missing = await cli(["roundtrip", "small.png", "-o", join("no-such-folder", "out.png"), ...FAST]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/out\.png: cannot write: its folder does not exist/);
    expect(readdirSync(join(dir, "a-folder"))).toEqual([]);
    expect(leftovers()).toEqual([]);
  });
});

describe("messages in the user's terms", () => {
  it("decode of a picture says it is not a safetensors file", async () => {
    const r = await cli(["decode", "small.png", ...FAST]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/small\.png: not a safetensors file: it is a PNG image/);
    expect(r.stderr).not.toMatch(/header length/);
  });

  it("the pixel limit names --max-pixels, not the library option", async () => {
    const r = await cli(["encode", "small.png", "--max-pixels", "100", ...FAST]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/raise it with --max-pixels/);
    expect(r.stderr).not.toMatch(/maxPixels/);
  });

  it("a model with a tensor it does not use loads, with one warning line on stderr", async () => {
    mkdirSync(join(dir, "extra-model"));
    writeFileSync(join(dir, "extra-model", "config.json"), readFileSync(join(ASSETS, "demo-vae", "config.json")));
    const sd = readSafetensors(
      new Uint8Array(readFileSync(join(ASSETS, "demo-vae", "diffusion_pytorch_model.safetensors"))),
    ).tensors;
    sd.set("decoder.extra.bias", new Tensor([1, 2, 3], [3]));
    writeFileSync(join(dir, "extra-model", "diffusion_pytorch_model.safetensors"), writeSafetensors(sd));
    const r = await cli(["roundtrip", "small.png", "-o", "extra.png", "--model", "extra-model", "--json", ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    const warnings = r.stderr.split("\n").filter((l) => l.startsWith("autoencoderkl: warning: "));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /ignored tensors the model does not use: unexpected keys \(1\): decoder\.extra\.bias \[3\]/,
    );
    expect(r.json.model).toMatch(/extra-model$/);
  });
});
