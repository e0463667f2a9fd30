import { readFile, stat } from "node:fs/promises";
import { basename, extname, resolve } from "node:path";
import {
  AutoencoderKL,
  type AutoencoderKLConfig,
  AutoencoderKLError,
  type Components,
  type MemoryPlan,
  type RunOptions,
  readSafetensors,
  Tensor,
  type WeightDtype,
  writeSafetensors,
} from "../index.js";
import { cropTo, decodeImage, encodePngPixels, padToMultiple, writePng } from "../io/image/index.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import { pixels8, psnr8, sideBySide } from "./compare.js";
import { type IsaState, isaLine } from "./isa.js";
import { formatBytes } from "./memory.js";
import {
  applyMemoryOptions,
  backendOptions,
  bundledImage,
  componentsOption,
  type LoadedModel,
  loadModel,
  locateModel,
  type ModelOptions,
  modelLine,
  parseIntOption,
  UsageError,
  weightDtypeOption,
} from "./model.js";
import { planOutput, writeOutput } from "./output.js";
import { formatSeconds } from "./progress.js";

/** What every command gets: parsed options, where to print, and how to report progress. */
export interface CommandContext {
  positionals: string[];
  options: ModelOptions & Record<string, string | boolean | undefined>;
  /** Human-readable lines (suppressed with --json). */
  log: (line: string) => void;
  /** Warnings while loading (one line each on stderr, also with --json). */
  warn: (line: string) => void;
  run: RunOptions;
  /** The instruction set main() made available (before any WebAssembly was compiled). */
  isa: IsaState;
}

/** The JSON document printed with --json; human output is printed along the way instead. */
export type CommandResult = Record<string, unknown>;

/** Reads a file the user named, turning fs errors into one-line AutoencoderKLErrors. */
export async function readUserFile(path: string, what: string): Promise<Uint8Array> {
  try {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? `is a folder, not ${what}`
          : code === "EACCES"
            ? "permission denied"
            : (e as Error).message;
    throw new AutoencoderKLError(path, `cannot read ${what}: ${why}`, { cause: e });
  }
}

function maxPixels(o: CommandContext["options"]): number | undefined {
  return parseIntOption("max-pixels", o["max-pixels"] as string | undefined, 1);
}

/** An image file → [1, 3, H, W] in [-1, 1]. */
async function loadImage(path: string, o: CommandContext["options"]): Promise<Tensor> {
  const img = decodeImage(await readUserFile(path, "an image"), { name: path, maxPixels: maxPixels(o) });
  return new Tensor(img.data, [1, 3, img.height, img.width]);
}

/** File name stem: "photos/cat.png" → "cat", "x.latents.safetensors" → "x". */
function stem(path: string): string {
  return basename(path)
    .replace(/\.latents\.safetensors$/i, "")
    .replace(/\.[^.]+$/, "");
}

/** --sample/--seed, checked before any work is done. */
function posteriorOptions(o: CommandContext["options"]): { sample: boolean; seed: number | undefined } {
  const seed = parseIntOption("seed", o.seed as string | undefined, 0, 2 ** 32 - 1);
  if (seed !== undefined && o.sample !== true) throw new UsageError("--seed only applies with --sample");
  return { sample: o.sample === true, seed };
}

/**
 * Encodes any image size: pads right/bottom by edge replication to a multiple of the VAE's downscale
 * factor (2^(levels-1)), so the latent grid covers the whole image; callers crop the decode back.
 */
async function encodeImage(vae: AutoencoderKL, x: Tensor, o: CommandContext["options"], run: RunOptions) {
  const { sample, seed } = posteriorOptions(o);
  const padded = padToMultiple(x, vae.downscaleFactor);
  const t0 = performance.now();
  const { latentDist } = await vae.encode(padded, run);
  const ms = performance.now() - t0;
  const z = sample ? latentDist.sample({ seed: seed ?? 0 }) : latentDist.mode();
  return { z, ms, padded: padded.shape, posterior: sample ? "sample" : "mode", seed: sample ? (seed ?? 0) : undefined };
}

const round2 = (v: number) => Math.round(v * 100) / 100;

/**
 * CPU use of this process while `f` runs, in cores: (user + system time of every thread, the kernels'
 * workers included) / wall time. About the thread count when every thread stays busy.
 */
async function withCpuUse<T>(f: () => Promise<T>): Promise<{ value: T; cpuMs: number; wallMs: number }> {
  const c0 = process.cpuUsage(),
    t0 = performance.now();
  const value = await f();
  const c = process.cpuUsage(c0);
  return { value, cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0 };
}

/** "relaxed SIMD, 2 threads" for the wasm backend, else the backend's own description. */
function computeLine(m: LoadedModel): string {
  return m.isa
    ? `${m.isa === "relaxed" ? "relaxed" : "plain"} SIMD, ${m.threads} thread${m.threads === 1 ? "" : "s"}`
    : m.vae.backendDescription;
}

export async function roundtrip(ctx: CommandContext): Promise<CommandResult> {
  const { options: o, log } = ctx;
  if (ctx.positionals.length > 1)
    throw new UsageError(`roundtrip takes at most one image, got ${ctx.positionals.length}`);
  const imagePath = ctx.positionals[0] ?? bundledImage();
  posteriorOptions(o);
  const force = o.force === true;
  const x = await loadImage(imagePath, o);
  const output = planOutput(o.output as string | undefined, `${stem(imagePath)}-roundtrip.png`, force, [imagePath]);
  const compare = typeof o.compare === "string" ? planOutput(o.compare, "", force) : undefined;
  const [, , h, w] = x.shape;
  const loaded = await loadModel(o, ctx.warn);
  const { vae, location, loadMs } = loaded;
  log(modelLine(loaded));
  try {
    let decodeMs = 0;
    const {
      value: [enc, sample],
      cpuMs,
      wallMs,
    } = await withCpuUse(async () => {
      const enc = await encodeImage(vae, x, o, ctx.run);
      const t1 = performance.now();
      const { sample } = await vae.decode(enc.z, ctx.run);
      decodeMs = performance.now() - t1;
      return [enc, sample] as const;
    });
    const cpuCores = round2(cpuMs / wallMs);
    const y = cropTo(sample, h, w);
    const orig = pixels8(x),
      recon = pixels8(y);
    const p = psnr8(orig.pixels, recon.pixels);
    await writeOutput(output, encodePngPixels(recon.pixels, w, h, 3));
    if (compare) {
      const side = sideBySide(orig.pixels, recon.pixels, w, h);
      await writeOutput(compare, encodePngPixels(side.pixels, side.width, side.height, 3));
    }
    const psnrText = Number.isFinite(p) ? `${p.toFixed(2)} dB` : "inf (identical)";
    log(`PSNR ${psnrText}  (${w}×${h}, ${vae.backend} backend)`);
    log(
      `time: load ${formatSeconds(loadMs / 1000)}, encode ${formatSeconds(enc.ms / 1000)}, decode ${formatSeconds(decodeMs / 1000)} (${computeLine(loaded)}; CPU use ${cpuCores.toFixed(2)} cores)`,
    );
    log(
      `wrote ${output.path}${compare ? ` and ${compare.path} (original | reconstruction | error heat map: mean absolute error over RGB per pixel, black 0 → red → yellow → white ≥ 64 levels of 255)` : ""}`,
    );
    return {
      command: "roundtrip",
      image: resolve(imagePath),
      model: location,
      backend: vae.backend,
      isa: loaded.isa,
      threads: loaded.threads,
      width: w,
      height: h,
      posterior: enc.posterior,
      ...(enc.seed !== undefined ? { seed: enc.seed } : {}),
      psnr: Number.isFinite(p) ? round2(p) : null,
      psnrExact: Number.isFinite(p) ? p : null,
      loadMs: Math.round(loadMs),
      encodeMs: Math.round(enc.ms),
      decodeMs: Math.round(decodeMs),
      cpuCores,
      output: output.path,
      ...(compare ? { compare: compare.path } : {}),
    };
  } finally {
    loaded.dispose();
  }
}

/** How diffusers pipelines scale latents for the denoiser, from the config. */
function scalingOf(cfg: AutoencoderKLConfig) {
  const mean = Array.isArray(cfg.latents_mean) ? cfg.latents_mean : null;
  const std = Array.isArray(cfg.latents_std) ? cfg.latents_std : null;
  return {
    scale: cfg.scaling_factor,
    shift: cfg.shift_factor ?? null,
    mean: mean && std ? mean : null,
    std: mean && std ? std : null,
  };
}

type Scaling = ReturnType<typeof scalingOf>;

/**
 * Applies (forward) or undoes the pipeline scaling in place: per-channel (z − mean)·scale / std when the
 * config has latents_mean/latents_std (SDXL-style), else (z − shift)·scale (SD: shift 0; SD3/Flux: shift).
 */
function applyScaling(z: Tensor, s: Scaling, forward: boolean): Tensor {
  const [b, c, h, w] = z.shape;
  const out = new Float32Array(z.data.length);
  const hw = h * w;
  for (let n = 0; n < b; n++) {
    for (let k = 0; k < c; k++) {
      const m = s.mean ? s.mean[k] : (s.shift ?? 0);
      const mul = s.std ? s.scale / s.std[k] : s.scale;
      const base = (n * c + k) * hw;
      for (let i = base; i < base + hw; i++) out[i] = forward ? (z.data[i] - m) * mul : z.data[i] / mul + m;
    }
  }
  return new Tensor(out, z.shape);
}

export const LATENTS_FORMAT = "autoencoderkl.latents/1";

export async function encode(ctx: CommandContext): Promise<CommandResult> {
  const { options: o, log } = ctx;
  if (ctx.positionals.length !== 1)
    throw new UsageError("encode needs exactly one image: autoencoderkl encode <image> -o latents.safetensors");
  const imagePath = ctx.positionals[0];
  posteriorOptions(o);
  const x = await loadImage(imagePath, o);
  const output = planOutput(
    o.output as string | undefined,
    `${stem(imagePath)}.latents.safetensors`,
    o.force === true,
    [imagePath],
  );
  const [, , h, w] = x.shape;
  const loaded = await loadModel(o, ctx.warn, "encoder");
  const { vae, location } = loaded;
  log(modelLine(loaded));
  try {
    const enc = await encodeImage(vae, x, o, ctx.run);
    const raw = o.raw === true;
    const s = scalingOf(vae.config);
    const latents = raw ? enc.z : applyScaling(enc.z, s, true);
    // The metadata says exactly what was stored, so `decode` (or a Python user) can undo it.
    const metadata: Record<string, string> = {
      format: LATENTS_FORMAT,
      latents: raw ? "raw" : "scaled",
      scaling_factor: String(s.scale),
      shift_factor: s.shift === null ? "null" : String(s.shift),
      posterior: enc.posterior,
      image_width: String(w),
      image_height: String(h),
      latent_channels: String(vae.config.latent_channels),
      model: basename(location),
    };
    if (s.mean && s.std) {
      metadata.latents_mean = JSON.stringify(s.mean);
      metadata.latents_std = JSON.stringify(s.std);
    }
    if (enc.seed !== undefined) metadata.seed = String(enc.seed);
    await writeOutput(output, writeSafetensors({ latents }, metadata));
    log(
      `encoded ${w}×${h} → latents [${latents.shape.join(", ")}] (${enc.posterior}${raw ? ", raw" : `, scaled ×${s.scale}${s.shift !== null ? ` after −${s.shift}` : ""}`}) in ${formatSeconds(enc.ms / 1000)}`,
    );
    log(`wrote ${output.path}`);
    return {
      command: "encode",
      image: resolve(imagePath),
      model: location,
      backend: vae.backend,
      isa: loaded.isa,
      width: w,
      height: h,
      shape: latents.shape,
      metadata,
      encodeMs: Math.round(enc.ms),
      output: output.path,
    };
  } finally {
    loaded.dispose();
  }
}

function numberMeta(meta: Record<string, string>, key: string, file: string): number | null {
  const v = meta[key];
  if (v === undefined || v === "null" || v === "None") return null;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new AutoencoderKLError(file, `metadata ${key} = ${JSON.stringify(v)} is not a number`);
  return n;
}

function arrayMeta(meta: Record<string, string>, key: string, file: string, channels: number): number[] | null {
  if (meta[key] === undefined) return null;
  let v: unknown;
  try {
    v = JSON.parse(meta[key]);
  } catch {
    v = undefined;
  }
  if (!Array.isArray(v) || v.length !== channels || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
    throw new AutoencoderKLError(file, `metadata ${key} must be a JSON array of ${channels} numbers`);
  }
  return v as number[];
}

export async function decode(ctx: CommandContext): Promise<CommandResult> {
  const { options: o, log } = ctx;
  if (ctx.positionals.length !== 1)
    throw new UsageError(
      "decode needs exactly one latents file: autoencoderkl decode <latents.safetensors> -o image.png",
    );
  if (o.raw === true && o.scaled === true) throw new UsageError("--raw and --scaled contradict each other");
  const file = ctx.positionals[0];
  const { metadata, tensors } = readSafetensors(await readUserFile(file, "a latents file"), file);
  // Never the input's own name: `decode x.latents.safetensors` must not land on x.png, the original photo.
  const output = planOutput(o.output as string | undefined, `${stem(file)}.decoded.png`, o.force === true, [file]);
  let z = tensors.get("latents") ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
  if (!z)
    throw new AutoencoderKLError(
      file,
      `has no tensor named "latents" (found ${[...tensors.keys()].slice(0, 5).join(", ") || "none"})`,
    );
  if (z.shape.length === 3) z = z.reshape([1, ...z.shape]);
  if (z.shape.length !== 4)
    throw new AutoencoderKLError(file, `latents must have shape [B, C, h, w], got [${z.shape.join(", ")}]`);
  const loaded = await loadModel(o, ctx.warn, "decoder");
  const { vae, location } = loaded;
  log(modelLine(loaded));
  try {
    // Whether to undo the pipeline scaling: the file's own record, unless overridden.
    const recorded = metadata.latents;
    const scaled = o.raw === true ? false : o.scaled === true ? true : recorded === "scaled";
    let how = "raw";
    if (scaled) {
      const c = z.shape[1];
      const fromFile = recorded === "scaled";
      const s: Scaling = fromFile
        ? {
            scale: numberMeta(metadata, "scaling_factor", file) ?? vae.config.scaling_factor,
            shift: numberMeta(metadata, "shift_factor", file),
            mean: arrayMeta(metadata, "latents_mean", file, c),
            std: arrayMeta(metadata, "latents_std", file, c),
          }
        : scalingOf(vae.config);
      if (!(s.scale > 0 || s.scale < 0)) throw new AutoencoderKLError(file, "scaling_factor must be a non-zero number");
      z = applyScaling(z, s, false);
      how = `unscaled ÷${s.scale}${s.shift !== null ? ` +${s.shift}` : ""}${fromFile ? " (from the file's metadata)" : " (from the model config)"}`;
    }
    const t0 = performance.now();
    const { sample } = await vae.decode(z, ctx.run);
    const ms = performance.now() - t0;
    const iw = numberMeta(metadata, "image_width", file),
      ih = numberMeta(metadata, "image_height", file);
    const [, , H, W] = sample.shape;
    const y = iw && ih && iw <= W && ih <= H && sample.shape[0] === 1 ? cropTo(sample, ih, iw) : sample;
    const first =
      y.shape[0] > 1 ? new Tensor(y.data.subarray(0, y.data.length / y.shape[0]), [1, ...y.shape.slice(1)]) : y;
    await writeOutput(output, writePng(first));
    log(
      `decoded latents [${z.shape.join(", ")}] (${how}) → ${first.shape[3]}×${first.shape[2]} in ${formatSeconds(ms / 1000)}`,
    );
    if (y.shape[0] > 1) log(`note: the file holds ${y.shape[0]} latents; wrote the first`);
    log(`wrote ${output.path}`);
    return {
      command: "decode",
      latents: resolve(file),
      model: location,
      backend: vae.backend,
      isa: loaded.isa,
      shape: z.shape,
      unscaled: scaled,
      width: first.shape[3],
      height: first.shape[2],
      decodeMs: Math.round(ms),
      output: output.path,
    };
  } finally {
    loaded.dispose();
  }
}

function parseSize(v: string | undefined, name: string): [number, number] {
  if (v === undefined) return [512, 512];
  const m = /^(\d+)(?:[x×](\d+))?$/i.exec(v.trim());
  if (!m) throw new UsageError(`--${name} must be a size like 512 or 768x512, got ${JSON.stringify(v)}`);
  const w = +m[1],
    h = m[2] ? +m[2] : w;
  if (w < 1 || h < 1 || w > 65536 || h > 65536)
    throw new UsageError(`--${name} sides must be from 1 to 65536, got ${v}`);
  return [w, h];
}

/** Counts of tensors per dtype in a safetensors file, read from its header only. */
function dtypeCounts(bytes: Uint8Array, source: string): Record<string, number> {
  const header = readSafetensorsHeader(bytes, source);
  const counts: Record<string, number> = {};
  for (const e of header.entries) counts[e.dtype] = (counts[e.dtype] ?? 0) + 1;
  return counts;
}

export async function info(ctx: CommandContext): Promise<CommandResult> {
  const { options: o, log } = ctx;
  if (ctx.positionals.length > 1) throw new UsageError("info takes at most one model");
  const model = ctx.positionals[0] ?? (o.model as string | undefined);
  const [w, h] = parseSize(o.size as string | undefined, "size");
  const { location, kind } = locateModel(model);
  const components = componentsOption(o, "both");
  let config: AutoencoderKLConfig;
  let parameters: number;
  let weightsFile: string | null = null;
  let fileBytes: number | null = null;
  let dtypes: Record<string, number> | null = null;
  if (kind === "diffusers folder" && !/^https?:/i.test(location)) {
    // Config and weight header only: no weights are converted or uploaded.
    const cfgPath = resolve(location, "config.json");
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(await readUserFile(cfgPath, "config.json")));
    } catch (e) {
      if (e instanceof AutoencoderKLError)
        throw new AutoencoderKLError(location, `not a diffusers model folder: ${e.rule}`, { cause: e });
      throw new AutoencoderKLError(cfgPath, `is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    const vae = await AutoencoderKL.fromConfig(raw, { backend: "reference", components });
    config = vae.config;
    parameters = [...vae.parameterShapes().values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
    vae.dispose();
    const suffix = typeof o.variant === "string" ? `.${o.variant}` : "";
    for (const name of [`diffusion_pytorch_model${suffix}.safetensors`, `diffusion_flax_model${suffix}.msgpack`]) {
      const p = resolve(location, name);
      const st = await stat(p).catch(() => null);
      if (!st?.isFile()) continue;
      weightsFile = p;
      fileBytes = st.size;
      if (name.endsWith(".safetensors")) dtypes = dtypeCounts(await readUserFile(p, "weights"), p);
      break;
    }
    if (!weightsFile)
      throw new AutoencoderKLError(
        location,
        `no weights found: looked for diffusion_pytorch_model${suffix}.safetensors and diffusion_flax_model${suffix}.msgpack`,
      );
  } else {
    const loaded = await loadModel(
      { ...o, model: location, backend: "reference", threads: "1", isa: "auto" },
      ctx.warn,
    );
    config = loaded.vae.config;
    parameters = [...loaded.vae.parameterShapes().values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
    loaded.dispose();
    if (!/^https?:/i.test(location)) {
      weightsFile = location;
      fileBytes = (await stat(location)).size;
      if (extname(location).toLowerCase() === ".safetensors")
        dtypes = dtypeCounts(await readUserFile(location, "weights"), location);
    }
  }
  const f = 2 ** (config.block_out_channels.length - 1);
  const mem = await memoryPlans(o, config, components, w, h);
  log(`model       ${location} (${kind})`);
  if (weightsFile)
    log(
      `weights     ${basename(weightsFile)}, ${formatBytes(fileBytes!)}${
        dtypes
          ? `, ${Object.entries(dtypes)
              .map(([k, n]) => `${n} × ${k}`)
              .join(", ")}`
          : ""
      }`,
    );
  log(
    `parameters  ${parameters.toLocaleString("en-US")}${components === "both" ? "" : ` (--components ${components}: ${components === "decoder" ? "post_quant_conv + decoder" : "encoder + quant_conv"} only)`}`,
  );
  log(
    `structure   ${config.block_out_channels.length} levels (÷${f}), block_out_channels [${config.block_out_channels.join(", ")}], layers_per_block ${config.layers_per_block}, ${config.norm_num_groups} groups, act ${config.act_fn}${config.mid_block_add_attention ? ", mid-block attention" : ""}`,
  );
  log(`channels    in ${config.in_channels}, out ${config.out_channels}, latent ${config.latent_channels}`);
  log(
    `scaling     scaling_factor ${config.scaling_factor}, shift_factor ${config.shift_factor ?? "none"}${config.latents_mean ? ", latents_mean/std per channel" : ""}`,
  );
  log(`sample_size ${config.sample_size} (default tile)`);
  log(`wasm        ${isaLine(ctx.isa)}, Node ${process.versions.node}`);
  for (const kind of ["encode", "decode"] as const) {
    const p = mem[kind];
    if (p === null) continue;
    const what = `${kind} ${w}×${h}`;
    if (typeof p === "string") {
      log(`memory      ${what}: ${p}`);
      continue;
    }
    const how =
      p.mode === "untiled"
        ? "untiled"
        : `${p.mode === "exact" ? "exact tiling" : "blended tiles"}, ${kind === "decode" ? p.tileSize! * f : p.tileSize}-px tiles${p.mode === "exact" ? `, ${p.storedCheckpoints ? "checkpoints in temporary files" : `checkpoints ≤ ${p.checkpointMiB} MiB`}, ≈ ${p.workRatio}× the untiled work` : ""}`;
    log(
      `memory      ${what}: ${how}; predicted peak ${p.peakMiB} MiB${p.budgetMiB !== null ? ` (budget ${p.budgetMiB} MiB)` : ""} = runtime ${p.parts.runtimeMiB} + weights ${p.parts.weightsMiB} (${mem.weightDtype}) + working set ${p.parts.workingMiB} + host ${p.parts.hostMiB}`,
    );
  }
  return {
    command: "info",
    model: location,
    kind,
    components,
    weightsFile,
    fileBytes,
    dtypes,
    parameters,
    config,
    memory: mem,
    // what the wasm backend runs here: the instruction set, and whether relaxed SIMD is native or was turned on
    isa: ctx.isa.isa,
    relaxedSimd: ctx.isa.relaxedSimd,
    node: process.versions.node,
  };
}

/**
 * The memory plan of an encode and a decode of a w×h image with --backend/--threads, --tile/--exact and
 * --max-memory, from the config alone (no weights are loaded: the planner needs shapes only). A plan that does
 * not fit the budget is its error message.
 */
async function memoryPlans(
  o: CommandContext["options"],
  config: AutoencoderKLConfig,
  components: Components,
  w: number,
  h: number,
): Promise<{
  weightDtype: WeightDtype;
  width: number;
  height: number;
  weights: number;
  peak: number;
  encode: MemoryPlan | string | null;
  decode: MemoryPlan | string | null;
}> {
  const { backend, threads } = backendOptions(o);
  // planned for the CPU backend unless another is named: its working set is what the process holds
  const weightDtype = weightDtypeOption(o);
  const vae = await AutoencoderKL.fromConfig(config, {
    backend: backend === "auto" ? "wasm" : backend,
    threads,
    components,
    weightDtype,
  });
  try {
    applyMemoryOptions(vae, o);
    const f = vae.downscaleFactor;
    const [pw, ph] = [Math.ceil(w / f) * f, Math.ceil(h / f) * f];
    const plan = async (kind: "encode" | "decode"): Promise<MemoryPlan | string | null> => {
      if (components === (kind === "encode" ? "decoder" : "encoder")) return null;
      const shape = kind === "encode" ? [1, config.in_channels, ph, pw] : [1, config.latent_channels, ph / f, pw / f];
      try {
        return await vae.planMemory(kind, shape);
      } catch (e) {
        if (e instanceof AutoencoderKLError) return `does not fit: ${e.rule}`;
        throw e;
      }
    };
    const encode = await plan("encode"),
      decode = await plan("decode");
    const peaks = [encode, decode].filter((p): p is MemoryPlan => typeof p === "object" && p !== null);
    const weights = [...vae.parameterShapes().values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 4), 0);
    return {
      weightDtype,
      width: w,
      height: h,
      weights,
      peak: Math.max(0, ...peaks.map((p) => p.peakMiB * 2 ** 20)),
      encode,
      decode,
    };
  } finally {
    vae.dispose();
  }
}

/** A deterministic test picture: smooth colour gradients plus texture, values in [-1, 1]. */
function syntheticImage(h: number, w: number): Tensor {
  const d = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        d[c * h * w + y * w + x] =
          0.6 * Math.sin((x / w) * 6.3 * (c + 1) + y / 17) * Math.cos((y / h) * 3.1 + c) +
          0.2 * Math.sin(x * 0.7 + y * 1.3);
      }
    }
  }
  return new Tensor(d, [1, 3, h, w]);
}

export async function bench(ctx: CommandContext): Promise<CommandResult> {
  const { options: o, log } = ctx;
  if (ctx.positionals.length) throw new UsageError("bench takes no positional arguments");
  const sizes = ((o.sizes as string | undefined) ?? "256,512").split(",").map((s) => parseSize(s, "sizes"));
  const repeat = parseIntOption("repeat", o.repeat as string | undefined, 1, 100) ?? 1;
  const loaded = await loadModel(o, ctx.warn);
  const { vae, location, loadMs } = loaded;
  log(modelLine(loaded));
  const f = vae.downscaleFactor;
  const rows: { width: number; height: number; encodeMs: number; decodeMs: number; cpuCores: number }[] = [];
  try {
    log(`${vae.backend} backend (${computeLine(loaded)}), model loaded in ${formatSeconds(loadMs / 1000)}`);
    log(
      `${"size".padEnd(11)} ${"encode".padStart(10)} ${"decode".padStart(10)} ${"Mpx/s".padStart(8)} ${"CPU use".padStart(11)}`,
    );
    for (const [w0, h0] of sizes) {
      const w = Math.max(f, Math.ceil(w0 / f) * f),
        h = Math.max(f, Math.ceil(h0 / f) * f);
      const x = syntheticImage(h, w);
      let best = { encodeMs: Infinity, decodeMs: Infinity };
      // CPU use over all the repeats (cores: process CPU time / wall time)
      const { cpuMs, wallMs } = await withCpuUse(async () => {
        for (let r = 0; r < repeat; r++) {
          const t0 = performance.now();
          const { latentDist } = await vae.encode(x, ctx.run);
          const t1 = performance.now();
          await vae.decode(latentDist.mode(), ctx.run);
          const t2 = performance.now();
          best = { encodeMs: Math.min(best.encodeMs, t1 - t0), decodeMs: Math.min(best.decodeMs, t2 - t1) };
        }
      });
      const cpuCores = round2(cpuMs / wallMs);
      // Hundredths of a millisecond: a tiny size can take under 1 ms, which must not print as 0.
      rows.push({ width: w, height: h, encodeMs: round2(best.encodeMs), decodeMs: round2(best.decodeMs), cpuCores });
      const mpx = (w * h) / 1e6 / ((best.encodeMs + best.decodeMs) / 1000);
      log(
        `${`${w}×${h}`.padEnd(11)} ${formatSeconds(best.encodeMs / 1000).padStart(10)} ${formatSeconds(best.decodeMs / 1000).padStart(10)} ${mpx.toFixed(3).padStart(8)} ${`${cpuCores.toFixed(2)} cores`.padStart(11)}`,
      );
    }
    return {
      command: "bench",
      model: location,
      backend: vae.backend,
      backendDescription: vae.backendDescription,
      isa: loaded.isa,
      threads: loaded.threads,
      repeat,
      loadMs: Math.round(loadMs),
      results: rows,
    };
  } finally {
    loaded.dispose();
  }
}
