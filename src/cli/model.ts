import { existsSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createWasmBackend } from "../backends/wasm/index.js";
import {
  AutoencoderKL,
  AutoencoderKLError,
  type BackendChoice,
  type Components,
  type Kernels,
  selectBackend,
  type WeightDtype,
} from "../index.js";
import { fileCheckpointStorage } from "../io/checkpoint-files.js";
import { isaOf, parseIsa } from "./isa.js";

/** A usage mistake (bad flag, missing argument): exit code 2, with the usage hint. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * The package folder holding assets/: found by walking up from this file, so it works from src/cli
 * (sources), dist/cli (compiled) and any bundle placed inside the package.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(resolve(dir, "assets", "demo-vae", "config.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new AutoencoderKLError("autoencoderkl", "cannot find the bundled assets/ folder (a broken install?)");
}

export const bundledModel = () => resolve(packageRoot(), "assets", "demo-vae");
export const bundledImage = () => resolve(packageRoot(), "assets", "chelsea.png");

export interface ModelOptions {
  model?: string;
  backend?: string;
  threads?: string;
  variant?: string;
  tile?: boolean;
  "tile-size"?: string;
  exact?: boolean;
  "max-memory"?: string;
  "weight-dtype"?: string;
  components?: string;
  isa?: string;
}

const BACKENDS: readonly BackendChoice[] = ["auto", "wasm", "webgpu", "reference"];
const SINGLE_FILE = /\.(safetensors|ckpt|pt|pth|bin)([?#].*)?$/i;

export function parseIntOption(
  name: string,
  value: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || +value < min || +value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return +value;
}

export function backendOptions(o: ModelOptions): { backend: BackendChoice; threads: number } {
  const backend = (o.backend ?? "auto") as BackendChoice;
  if (!BACKENDS.includes(backend))
    throw new UsageError(`--backend must be one of ${BACKENDS.join(", ")}, got ${JSON.stringify(o.backend)}`);
  // The library's default is one thread; a command-line run has the machine to itself.
  const threads = parseIntOption("threads", o.threads, 1, 256) ?? Math.min(availableParallelism(), 16);
  return { backend, threads };
}

const COMPONENTS: readonly Components[] = ["decoder", "encoder", "both"];

/** --components, or what the command needs (decode loads only the decoder, encode only the encoder). */
export function componentsOption(o: ModelOptions, needs: Components): Components {
  const value = o.components ?? needs;
  if (!COMPONENTS.includes(value as Components))
    throw new UsageError(`--components must be one of ${COMPONENTS.join(", ")}, got ${JSON.stringify(o.components)}`);
  return value as Components;
}

export type ModelKind = "diffusers folder" | "single file";

/** Where --model points and what it is; the bundled demo model when absent. */
export function locateModel(model: string | undefined): { location: string; kind: ModelKind; bundled: boolean } {
  if (model === undefined || model === "") return { location: bundledModel(), kind: "diffusers folder", bundled: true };
  if (/^file:/i.test(model)) model = fileURLToPath(model);
  if (/^https?:\/\//i.test(model))
    return {
      location: model,
      kind: SINGLE_FILE.test(new URL(model).pathname) ? "single file" : "diffusers folder",
      bundled: false,
    };
  const path = resolve(model);
  if (!existsSync(path)) {
    throw new AutoencoderKLError(
      model,
      "not found: --model must be a diffusers VAE folder (with config.json) or a single-file checkpoint (.safetensors, .ckpt)",
    );
  }
  const st = statSync(path);
  if (st.isDirectory()) return { location: path, kind: "diffusers folder", bundled: false };
  if (basename(path) === "config.json") return { location: dirname(path), kind: "diffusers folder", bundled: false };
  return { location: path, kind: "single file", bundled: false };
}

export interface LoadedModel {
  vae: AutoencoderKL;
  location: string;
  kind: ModelKind;
  /** The demo model in assets/, used when --model is absent. */
  bundled: boolean;
  loadMs: number;
  /** The wasm kernels' instruction set, null on the other backends. */
  isa: "relaxed" | "simd" | null;
  /** Threads the kernels run on (the wasm backend's pool; 1 elsewhere). */
  threads: number;
  /** Disposes the model and its kernels (the CLI makes the kernels, so it owns them). */
  dispose(): void;
}

/**
 * The kernels for --backend/--threads/--isa. --isa auto lets the library choose (relaxed SIMD whenever the
 * runtime validates it: main() has turned V8's flag on by now where needed); --isa simd|relaxed insists on
 * that build of the wasm kernels.
 */
async function makeKernels(backend: BackendChoice, threads: number, isaOption: string | undefined): Promise<Kernels> {
  const isa = parseIsa(isaOption);
  if (isa === "auto") return selectBackend({ backend, threads });
  if (backend === "webgpu" || backend === "reference")
    throw new UsageError(`--isa ${isa} applies to the wasm backend, not --backend ${backend}`);
  return createWasmBackend({ threads, relaxed: isa === "relaxed" });
}

/**
 * The line that says which model ran. For the bundled demo it says what that model is and how to use
 * a real one, since a first run's reconstruction is only as good as a 3.9 M-parameter demo model.
 */
export function modelLine(m: LoadedModel): string {
  if (!m.bundled) return `model: ${m.location} (${m.kind}), ${m.vae.backend} backend`;
  return (
    `model: the bundled demo VAE (assets/demo-vae: 3.9 M parameters, 16 latent channels, trained for this project to ` +
    `show the library offline; not a Stable Diffusion VAE), ${m.vae.backend} backend.\n` +
    `       For real weights pass --model <folder|file|url>, e.g. the vae/ folder of a Stable Diffusion repository (see README, "Real weights").`
  );
}

export async function loadModel(
  o: ModelOptions,
  onWarning?: (line: string) => void,
  needs: Components = "both",
): Promise<LoadedModel> {
  const { backend, threads } = backendOptions(o);
  const components = componentsOption(o, needs);
  const tileSize = parseIntOption("tile-size", o["tile-size"], 16, 1 << 16);
  const maxMemory = parseIntOption("max-memory", o["max-memory"], 16, 1 << 22);
  const { location, kind, bundled } = locateModel(o.model);
  const t0 = performance.now();
  const kernels = await makeKernels(backend, threads, o.isa);
  let vae: AutoencoderKL;
  try {
    vae = await loadWeights(location, kind, kernels, o.variant, components, weightDtypeOption(o), onWarning);
  } catch (e) {
    kernels.dispose();
    throw e;
  }
  const dispose = () => {
    vae.dispose();
    kernels.dispose();
  };
  try {
    applyMemoryOptions(vae, o, tileSize, maxMemory);
  } catch (e) {
    dispose();
    throw e;
  }
  return {
    vae,
    location,
    kind,
    bundled,
    loadMs: performance.now() - t0,
    isa: isaOf(kernels),
    threads: (kernels as { threads?: number }).threads ?? 1,
    dispose,
  };
}

/**
 * --tile / --tile-size (diffusers' blended tiles), --exact (exact tiling: the untiled output in tiles) and
 * --max-memory (the model plans untiled or exact tiling under that many MiB; it overrides the tiling flags).
 */
export function applyMemoryOptions(
  vae: AutoencoderKL,
  o: ModelOptions,
  tileSize = parseIntOption("tile-size", o["tile-size"], 16, 1 << 16),
  maxMemory = parseIntOption("max-memory", o["max-memory"], 16, 1 << 22),
): void {
  if (o.exact) {
    // exact tiles cut the latent grid: the side must be a whole number of latent pixels
    const unit = vae.downscaleFactor;
    if (tileSize !== undefined && tileSize % unit !== 0)
      throw new UsageError(`--tile-size must be a multiple of ${unit} for this model with --exact, got ${tileSize}`);
    vae.enableTiling({ mode: "exact", ...(tileSize !== undefined ? { tileSampleMinSize: tileSize } : {}) });
  } else if (o.tile || tileSize !== undefined) {
    // Tiles step by 3/4 of their side; a multiple of 4·2^(levels-1) keeps every edge tile (of a padded
    // image) at least 2^(levels-1) pixels wide, the least the encoder's downsampling can take.
    const unit = 4 * vae.downscaleFactor;
    if (tileSize !== undefined && tileSize % unit !== 0)
      throw new UsageError(`--tile-size must be a multiple of ${unit} for this model, got ${tileSize}`);
    vae.enableTiling(tileSize !== undefined ? { tileSampleMinSize: tileSize } : {});
  }
  if (maxMemory !== undefined) vae.maxMemoryMiB = maxMemory;
  // a command-line run may spill exact tiling's checkpoints to temporary files rather than recompute them
  if (maxMemory !== undefined || o.exact) vae.checkpointStorage = fileCheckpointStorage();
}

/** --weight-dtype: how conv and linear weights are held in memory (f16 halves them; the same outputs for f16 files). */
export function weightDtypeOption(o: ModelOptions): WeightDtype {
  const v = o["weight-dtype"] ?? "f32";
  if (v !== "f32" && v !== "f16") throw new UsageError(`--weight-dtype must be f32 or f16, got ${JSON.stringify(v)}`);
  return v;
}

async function loadWeights(
  location: string,
  kind: ModelKind,
  kernels: Kernels,
  variant: string | undefined,
  components: Components,
  weightDtype: WeightDtype,
  onWarning?: (line: string) => void,
): Promise<AutoencoderKL> {
  let vae: AutoencoderKL;
  if (kind === "single file") {
    const fromSingleFile = (
      AutoencoderKL as unknown as { fromSingleFile?: (src: string, opts: object) => Promise<AutoencoderKL> }
    ).fromSingleFile;
    if (typeof fromSingleFile !== "function") {
      throw new AutoencoderKLError(
        location,
        "single-file checkpoints are not supported by this build; pass a diffusers folder",
      );
    }
    vae = await fromSingleFile.call(AutoencoderKL, location, { kernels, onWarning, components, weightDtype });
  } else {
    vae = await AutoencoderKL.fromPretrained(location, { kernels, variant, onWarning, components, weightDtype });
  }
  return vae;
}
