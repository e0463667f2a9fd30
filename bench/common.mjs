// Shared helpers for the benchmarks in bench/: the SD-1.x VAE config, seeded random weights, FLOP counts,
// peak-RSS readings, child processes and machine facts. Plain ESM; everything runs against dist/.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, "..");
export const DIST = path.join(ROOT, "dist");

/** Where ../shared/peers keeps its large files; its export writes the shared weights as a diffusers folder. */
export const PEERS_DIR = process.env.PEERS_DIR || path.join(os.homedir(), ".cache", "autoencoderkl-peers");
export const PEERS_WEIGHTS = path.join(PEERS_DIR, "onnx", "diffusers");

/** The Stable Diffusion 1.x VAE shape (the same config.json diffusers ships for SD 1.x, sample_size 512). */
export const SD_CONFIG = Object.freeze({
  _class_name: "AutoencoderKL",
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 512,
  scaling_factor: 0.18215,
});

/**
 * Workloads. decode_N: latent 1×4×N×N → image 8N×8N; encode_N: image 1×3×N×N → moments. The three SD-1.x
 * workloads of ../shared/peers carry its GFLOP figures (2 × multiply-adds, GroupNorm/SiLU not counted);
 * `countGflop` reproduces them and gives the others.
 */
export const PEER_GFLOP = { decode_32: 622.2, decode_64: 2514.5, encode_256: 272.7 };

export function parseWorkload(name) {
  const m = /^(decode|encode)_(\d+)$/.exec(name);
  if (!m)
    throw new Error(`unknown workload ${JSON.stringify(name)}: expected decode_<latent side> or encode_<image side>`);
  const side = +m[2];
  if (m[1] === "decode") return { name, kind: "decode", dims: [1, 4, side, side], outSide: side * 8 };
  if (side % 8) throw new Error(`${name}: the image side must be a multiple of 8`);
  return { name, kind: "encode", dims: [1, 3, side, side], outSide: side / 8 };
}

/**
 * Multiply-adds × 2 of the SD-1.x VAE (diffusers layout) for one decode of an h×w latent or one encode of
 * an H×W image: convolutions, attention projections, q·kᵀ and p·v. Norms, activations, softmax not counted.
 */
export function countGflop(kind, h, w, cfg = SD_CONFIG) {
  const ch = cfg.block_out_channels,
    L = cfg.layers_per_block,
    lc = cfg.latent_channels;
  let macs = 0;
  const conv = (cin, cout, k, oh, ow) => {
    macs += cin * cout * k * k * oh * ow;
  };
  const resnet = (cin, cout, hh, ww) => {
    conv(cin, cout, 3, hh, ww);
    conv(cout, cout, 3, hh, ww);
    if (cin !== cout) conv(cin, cout, 1, hh, ww);
  };
  const attention = (c, n) => {
    macs += 4 * n * c * c + 2 * n * n * c;
  };
  const top = ch[ch.length - 1];
  if (kind === "decode") {
    let hh = h,
      ww = w;
    conv(lc, lc, 1, hh, ww); // post_quant_conv
    conv(lc, top, 3, hh, ww); // conv_in
    resnet(top, top, hh, ww);
    attention(top, hh * ww);
    resnet(top, top, hh, ww);
    const rev = [...ch].reverse();
    let prev = rev[0];
    rev.forEach((c, i) => {
      for (let j = 0; j <= L; j++) resnet(j === 0 ? prev : c, c, hh, ww);
      if (i < rev.length - 1) {
        hh *= 2;
        ww *= 2;
        conv(c, c, 3, hh, ww);
      }
      prev = c;
    });
    conv(ch[0], cfg.out_channels, 3, hh, ww); // conv_out
  } else {
    let hh = h,
      ww = w;
    conv(cfg.in_channels, ch[0], 3, hh, ww); // conv_in
    let prev = ch[0];
    ch.forEach((c, i) => {
      for (let j = 0; j < L; j++) resnet(j === 0 ? prev : c, c, hh, ww);
      if (i < ch.length - 1) {
        hh = Math.floor((hh + 1 - 3) / 2) + 1;
        ww = Math.floor((ww + 1 - 3) / 2) + 1;
        conv(c, c, 3, hh, ww);
      }
      prev = c;
    });
    resnet(top, top, hh, ww);
    attention(top, hh * ww);
    resnet(top, top, hh, ww);
    conv(top, 2 * lc, 3, hh, ww); // conv_out
    conv(2 * lc, 2 * lc, 1, hh, ww); // quant_conv
  }
  return (2 * macs) / 1e9;
}

export function workloadGflop(w) {
  return PEER_GFLOP[w.name] ?? countGflop(w.kind, w.dims[2], w.dims[3]);
}

// ---- seeded random numbers --------------------------------------------------------------------------

/** mulberry32: a small seeded 32-bit generator; uniform in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard normals (Box–Muller) from a seeded generator, scaled by std and shifted by mean. */
export function randn(n, seed, std = 1, mean = 0) {
  const u = rng(seed),
    out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u())),
      t = 2 * Math.PI * u();
    out[i] = mean + std * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(t);
  }
  return out;
}

/**
 * Random weights for every parameter the model reports: N(0, 0.02²) for convolutions and linear layers,
 * N(1, 0.02²) for GroupNorm weights, N(0, 0.02²) for biases; one seed per parameter (seed + index).
 */
export function randomStateDict(Tensor, shapes, seed = 0) {
  const sd = new Map();
  let i = 0;
  for (const [key, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormWeight = /norm[^.]*\.weight$/.test(key);
    sd.set(key, new Tensor(randn(n, seed * 100003 + ++i, 0.02, isNormWeight ? 1 : 0), shape));
  }
  return sd;
}

/**
 * The model for a benchmark: the peers' shared weights (a diffusers folder) when present, else the SD-1.x
 * config with seeded random weights. Returns { vae, weights } where weights says which.
 */
export async function loadModel(api, backendOptions, { weights = "auto", seed = 0 } = {}) {
  const { AutoencoderKL, Tensor } = api;
  const dir =
    weights === "auto"
      ? existsSync(path.join(PEERS_WEIGHTS, "config.json"))
        ? PEERS_WEIGHTS
        : null
      : weights === "random"
        ? null
        : weights;
  if (dir) return { vae: await AutoencoderKL.fromPretrained(dir, backendOptions), weights: dir };
  const vae = await AutoencoderKL.fromConfig(SD_CONFIG, backendOptions);
  await vae.loadStateDict(randomStateDict(Tensor, vae.parameterShapes(), seed));
  return { vae, weights: `random (seed ${seed}, N(0, 0.02²), GroupNorm weights N(1, 0.02²))` };
}

// ---- memory ----------------------------------------------------------------------------------------

/** Peak resident set of this process so far, MB (process.resourceUsage().maxRSS is in KiB). */
export function maxRssMb() {
  return process.resourceUsage().maxRSS / 1024;
}

/** VmHWM in MB (Linux), or null. */
export function vmHwmMb() {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? +m[1] / 1024 : null;
  } catch {
    return null;
  }
}

/** Resets the kernel's peak-RSS counter (Linux), so VmHWM afterwards measures from now on; false if not possible. */
export function resetHwm() {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

// ---- processes -------------------------------------------------------------------------------------

export const RELAXED_FLAG = "--experimental-wasm-relaxed-simd";

/**
 * Runs `node [flags] script args` and resolves with the object the child printed as `RESULT {json}`
 * (its other output is passed through, prefixed). Rejects with the tail of stderr if there is none.
 */
/**
 * @param {string} script
 * @param {string[]} args
 * @param {{ flags?: string[], env?: NodeJS.ProcessEnv, quiet?: boolean }} [options]
 * @returns {Promise<any>} the child's JSON result
 */
export function runChild(script, args, { flags = [], env = process.env, quiet = false } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...flags, script, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "",
      err = "";
    p.stdout.on("data", (d) => {
      out += d;
      if (!quiet)
        for (const line of String(d).split("\n"))
          if (line && !line.startsWith("RESULT ")) process.stdout.write(`    ${line}\n`);
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    p.on("close", (code, signal) => {
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (line) resolve(JSON.parse(line.slice(7)));
      else
        reject(
          new Error(
            `child ${path.basename(script)} ${args.join(" ")} failed (code ${code}, signal ${signal}):\n${err.slice(-3000)}`,
          ),
        );
    });
  });
}

export function median(a) {
  const s = [...a].sort((x, y) => x - y),
    m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---- machine ---------------------------------------------------------------------------------------

export function machineInfo() {
  const cpus = os.cpus();
  const loadavg = os.loadavg().map((v) => +v.toFixed(2));
  return {
    cpu: cpus[0]?.model ?? "unknown",
    logicalCores: os.availableParallelism?.() ?? cpus.length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.arch()}`,
    loadavg,
    date: new Date().toISOString(),
  };
}

/** Minimal flag parser: --key value, --key=value, --flag. */
/**
 * @param {string[]} argv
 * @param {string[]} [booleans]
 * @returns {{ _: string[], [flag: string]: any }}
 */
export function parseArgs(argv, booleans = []) {
  /** @type {{ _: string[], [flag: string]: any }} */
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) {
      out._.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const key = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (eq > 0) out[key] = a.slice(eq + 1);
    else if (booleans.includes(key)) out[key] = true;
    else if (i + 1 < argv.length) out[key] = argv[++i];
    else throw new Error(`${a} needs a value`);
  }
  return out;
}

export function fmt(v, digits = 2) {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(digits);
}
