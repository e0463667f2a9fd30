import type { BackendName, Kernels } from "../../backends/kernels.js";
import { type BackendChoice, selectBackend } from "../../backends/select.js";
import type { KernelSourceOptions } from "../../backends/wasm/loader.js";
import { AutoencoderKLError } from "../../errors.js";
import { type Components, type ComponentsOptions, checkComponents, isSkippedKey } from "../../io/components.js";
import { convertDeprecatedAttentionStream } from "../../io/original-keys.js";
import { folderLocation, openPretrained, type PretrainedOptions } from "../../io/pretrained.js";
import { type TensorStream, tensorStreamOf } from "../../io/tensor-stream.js";
import {
  Attention,
  type AttentionProcessor,
  FusedAttnProcessor,
  MemoryEfficientAttnProcessor,
} from "../../nn/attention.js";
import { type DeviceTensor, RunContext, type RunOptions } from "../../nn/context.js";
import { Conv2d } from "../../nn/conv2d.js";
import { Decoder } from "../../nn/decoder.js";
import { type CoderShape, Encoder } from "../../nn/encoder.js";
import { Module, type Parameter } from "../../nn/module.js";
import { type Program, runProgram } from "../../nn/program.js";
import { f32ToF16 } from "../../tensor/dtype.js";
import { Tensor } from "../../tensor/tensor.js";
import { type AutoencoderKLConfig, activationOf, resolveConfig } from "./config.js";
import { DiagonalGaussianDistribution } from "./distribution.js";
import { type CheckpointStorage, type ExactTilingOptions, exactSteps, runExactProgram } from "./exact-tiling.js";
import { checkBudget, type MemoryPlan, planMemory, predictTiling, runtimeAllowanceBytes } from "./memory-plan.js";
import { runTiled, type TileGrid } from "./tiling.js";

/**
 * Which backend runs the model. The wasm backend's kernels come from build/ next to the package unless
 * wasmModule (precompiled: Workers, Vercel Edge), wasmBytes or wasmUrl say otherwise.
 */
export interface BackendOptions extends KernelSourceOptions {
  backend?: BackendChoice;
  /** Worker threads for the wasm backend (default: available cores). */
  threads?: number;
  /** Use these kernels instead of selecting a backend (the model then does not dispose them). */
  kernels?: Kernels;
}

/** How forgiving loading is, as in diffusers. */
export interface LoadingOptions {
  /**
   * Receives one line per thing diffusers would warn about while loading (tensors the model does not
   * use, deprecated names converted). Default: silent.
   */
  onWarning?: (message: string) => void;
  /** Reject tensors the model does not use instead of warning (default false, as diffusers). */
  strict?: boolean;
}

/** A memory budget the model plans every encode and decode to (memory-plan.ts). */
export interface MemoryOptions {
  /**
   * Keep each encode/decode's predicted process peak under this many MiB: the model picks untiled or exact
   * tiling (tile side, checkpoint budget) before any work, or throws an AutoencoderKLError saying what
   * would fit. Overridable per call (`decode(z, { maxMemoryMiB })`). Default: none (untiled, or the tiling
   * enableTiling set).
   */
  maxMemoryMiB?: number;
  /**
   * Where exact tiling may keep checkpoints outside the process's memory (in Node: `fileCheckpointStorage()`
   * from autoencoderkl/node, temporary files). With it the planner can keep every checkpoint instead of
   * recomputing the ones that do not fit the budget, and `enableTiling({ mode: "exact" })` stores them all.
   */
  checkpointStorage?: CheckpointStorage;
}

/** How the weights are held in backend memory. */
export interface WeightOptions {
  /**
   * "f32" (default), or "f16": convolution and linear weights stay f16 in backend memory (half the bytes)
   * and the kernels widen them exactly while packing, so outputs are bit-identical to loading the same f16
   * values as f32. An f32 or bf16 file is rounded to f16 on load (round to nearest, ties to even, as
   * PyTorch's `.half()`). Biases and GroupNorm γ/β (a fraction of a percent of the bytes) stay f32.
   * wasm and webgpu keep 2 bytes per value; the reference backend holds them widened.
   */
  weightDtype?: WeightDtype;
}

export type WeightDtype = "f32" | "f16";

export interface FromPretrainedOptions
  extends BackendOptions,
    PretrainedOptions,
    LoadingOptions,
    WeightOptions,
    MemoryOptions {}

export interface TilingOptions {
  /** Image-space tile side (default: config.sample_size). */
  tileSampleMinSize?: number;
  /** Fraction of a tile that overlaps its neighbour (default 0.25). */
  tileOverlapFactor?: number;
  /**
   * "blend": diffusers' algorithm (seams blended linearly). "exact": the same output as untiled, with
   * memory bounded by tiles and checkpoints (see exact-tiling.ts).
   */
  mode?: "blend" | "exact";
  /** Exact mode: largest intermediate kept on the host, in MiB (default 256); larger ones are recomputed. */
  checkpointMiB?: number;
}

export interface FromSingleFileOptions
  extends BackendOptions,
    LoadingOptions,
    ComponentsOptions,
    WeightOptions,
    MemoryOptions {
  /** Config fields; without them the config is inferred from the tensor shapes. */
  config?: object;
  /** Download/read progress in bytes. */
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
}

export interface SavePretrainedOptions {
  /** "fp16" / "bf16" write diffusion_pytorch_model.<variant>.safetensors in that dtype; default fp32. */
  variant?: "fp16" | "bf16";
}

export interface ForwardOptions extends RunOptions {
  /** Decode a sample of the posterior instead of its mode (default false, as in diffusers). */
  samplePosterior?: boolean;
  seed?: number;
  noise?: Tensor;
}

/**
 * The model's own modules; its parameter keys are the diffusers state-dict keys. A half model builds
 * only its half (null elsewhere), so its parameters, loading and memory are that half's.
 */
class AutoencoderKLModules extends Module {
  readonly encoder: Encoder | null = null;
  readonly decoder: Decoder | null = null;
  readonly quantConv: Conv2d | null = null;
  readonly postQuantConv: Conv2d | null = null;

  constructor(cfg: AutoencoderKLConfig, components: Components) {
    super("");
    const shape: CoderShape = {
      blockOutChannels: cfg.block_out_channels,
      layersPerBlock: cfg.layers_per_block,
      groups: cfg.norm_num_groups,
      act: activationOf(cfg),
      midBlockAddAttention: cfg.mid_block_add_attention,
    };
    const lc = cfg.latent_channels;
    if (components !== "decoder") {
      this.encoder = this.child(new Encoder("encoder", cfg.in_channels, 2 * lc, shape));
      this.quantConv = cfg.use_quant_conv ? this.child(new Conv2d("quant_conv", 2 * lc, 2 * lc, 1)) : null;
    }
    if (components !== "encoder") {
      this.decoder = this.child(new Decoder("decoder", lc, cfg.out_channels, shape));
      this.postQuantConv = cfg.use_post_quant_conv ? this.child(new Conv2d("post_quant_conv", lc, lc, 1)) : null;
    }
  }

  /** Image → moments: the encoder, then quant_conv. Run eagerly (runProgram) or in exact tiles. */
  encodeProgram(): Program {
    // encode/tiledEncode check the half first with the user-facing message; this guards internal callers
    if (!this.encoder) throw new AutoencoderKLError("encoder", 'not loaded (components: "decoder")');
    return [...this.encoder.program(), ...(this.quantConv ? [{ kind: "conv", conv: this.quantConv } as const] : [])];
  }

  /** Latent → image: post_quant_conv, then the decoder. */
  decodeProgram(): Program {
    if (!this.decoder) throw new AutoencoderKLError("decoder", 'not loaded (components: "encoder")');
    return [
      ...(this.postQuantConv ? [{ kind: "conv", conv: this.postQuantConv } as const] : []),
      ...this.decoder.program(),
    ];
  }
}

function checkLoadingOptions(o: LoadingOptions): void {
  if (o.onWarning !== undefined && typeof o.onWarning !== "function") {
    throw new AutoencoderKLError(
      "options.onWarning",
      `must be a function (message: string) => void, got ${typeof o.onWarning}`,
    );
  }
  if (o.strict !== undefined && typeof o.strict !== "boolean") {
    throw new AutoencoderKLError("options.strict", `must be true or false, got ${JSON.stringify(o.strict)}`);
  }
}

function checkStorage(value: unknown): CheckpointStorage | null {
  if (value === undefined || value === null) return null;
  if (typeof (value as CheckpointStorage).open !== "function")
    throw new AutoencoderKLError(
      "options.checkpointStorage",
      "must be a CheckpointStorage (an object with open()), e.g. fileCheckpointStorage() from autoencoderkl/node",
    );
  return value as CheckpointStorage;
}

function checkWeightDtype(value: unknown): WeightDtype {
  if (value === undefined) return "f32";
  if (value === "f32" || value === "f16") return value;
  throw new AutoencoderKLError("options.weightDtype", `must be "f32" or "f16", got ${JSON.stringify(value)}`);
}

/** Weights held as f16 with weightDtype "f16": conv and linear weights (the kernels that widen them). */
const storesHalf = (p: Parameter): boolean => p.shape.length >= 2 && !p.retainHost;

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * diffusers' AutoencoderKL: encode images to a DiagonalGaussianDistribution over latents, decode latents
 * to images. Same config.json, same state-dict keys, same numbers (float32).
 */
export class AutoencoderKL {
  /** The full config.json, whichever half is loaded. */
  readonly config: AutoencoderKLConfig;
  /** Which half is loaded ("both" unless the `components` option said otherwise). */
  readonly components: Components;
  /** How conv and linear weights are held in backend memory (the `weightDtype` option; default "f32"). */
  readonly weightDtype: WeightDtype;
  private readonly kernels: Kernels;
  private readonly ownsKernels: boolean;
  private readonly modules: AutoencoderKLModules;
  private useSlicing = false;
  private useTiling = false;
  /** Image-space tile side; latent tiles are this / 2^(levels-1), as in diffusers. */
  tileSampleMinSize: number;
  tileOverlapFactor = 0.25;
  tilingMode: "blend" | "exact" = "blend";
  checkpointMiB = 256;
  private budgetMiB: number | null = null;
  /** Where exact tiling keeps checkpoints instead of memory (MemoryOptions.checkpointStorage); null: memory. */
  checkpointStorage: CheckpointStorage | null = null;
  private disposed = false;

  private constructor(
    config: AutoencoderKLConfig,
    kernels: Kernels,
    ownsKernels: boolean,
    components: Components,
    weightDtype: WeightDtype,
  ) {
    this.config = config;
    this.components = components;
    this.weightDtype = weightDtype;
    this.kernels = kernels;
    this.ownsKernels = ownsKernels;
    this.modules = new AutoencoderKLModules(config, components);
    this.tileSampleMinSize = config.sample_size;
  }

  /** Builds an unloaded model from a config object (validated, diffusers defaults filled in); `components` builds one half. */
  static async fromConfig(
    config: unknown,
    options: BackendOptions & ComponentsOptions & WeightOptions & MemoryOptions = {},
  ): Promise<AutoencoderKL> {
    const cfg = resolveConfig(config);
    const components = checkComponents(options.components);
    const weightDtype = checkWeightDtype(options.weightDtype);
    const budget = checkBudget(options.maxMemoryMiB, "options.maxMemoryMiB");
    const storage = checkStorage(options.checkpointStorage);
    const kernels =
      options.kernels ??
      (await selectBackend({
        backend: options.backend,
        threads: options.threads,
        wasmModule: options.wasmModule,
        wasmBytes: options.wasmBytes,
        wasmUrl: options.wasmUrl,
      }));
    const vae = new AutoencoderKL(cfg, kernels, !options.kernels, components, weightDtype);
    vae.budgetMiB = budget;
    vae.checkpointStorage = storage;
    return vae;
  }

  /**
   * Loads a diffusers folder (local path or URL): config.json + diffusion_pytorch_model[.variant].safetensors,
   * or diffusion_flax_model.msgpack with `fromFlax`.
   */
  static async fromPretrained(dirOrUrl: string | URL, options: FromPretrainedOptions = {}): Promise<AutoencoderKL> {
    checkLoadingOptions(options);
    checkBudget(options.maxMemoryMiB, "options.maxMemoryMiB");
    checkStorage(options.checkpointStorage);
    checkComponents(options.components);
    checkWeightDtype(options.weightDtype);
    const { config, weights: raw, source } = await openPretrained(dirOrUrl, options);
    try {
      const cfg = resolveConfig(config, source.config);
      const { stream, renamed } = convertDeprecatedAttentionStream(raw, source.weights);
      if (renamed.length) {
        options.onWarning?.(
          `${source.weights}: converted ${renamed.length} deprecated attention weight names (query/key/value/proj_attn → to_q/to_k/to_v/to_out.0), as diffusers does`,
        );
      }
      return await AutoencoderKL.loadNew(cfg, options, stream, source.weights);
    } finally {
      await raw.close();
    }
  }

  /**
   * Loads an original Stable Diffusion checkpoint (whole model or VAE only; safetensors, or .ckpt/.bin
   * pickles read without executing anything) from a path, URL, bytes or Blob. Without `config`, the
   * config is inferred from the tensor shapes.
   */
  static async fromSingleFile(
    source: string | URL | Uint8Array | ArrayBuffer | Blob,
    options: FromSingleFileOptions = {},
  ): Promise<AutoencoderKL> {
    checkLoadingOptions(options);
    checkBudget(options.maxMemoryMiB, "options.maxMemoryMiB");
    checkStorage(options.checkpointStorage);
    const components = checkComponents(options.components);
    checkWeightDtype(options.weightDtype);
    const { openSingleFile } = await import("../../io/single-file.js");
    const name = typeof source === "string" ? source : source instanceof URL ? source.href : "single file";
    const { config, weights } = await openSingleFile(source, {
      config: options.config,
      onProgress: options.onProgress,
      signal: options.signal,
      components,
    });
    try {
      return await AutoencoderKL.loadNew(resolveConfig(config, `${name} (config)`), options, weights, name);
    } finally {
      await weights.close();
    }
  }

  /** A new model with its weights streamed in; disposed again if loading fails. */
  private static async loadNew(
    cfg: AutoencoderKLConfig,
    options: BackendOptions & ComponentsOptions & WeightOptions & LoadingOptions,
    weights: TensorStream,
    source: string,
  ): Promise<AutoencoderKL> {
    const vae = await AutoencoderKL.fromConfig(cfg, options);
    try {
      await vae.loadWeights(weights, source, options);
    } catch (e) {
      vae.dispose();
      throw e;
    }
    return vae;
  }

  /**
   * Writes a diffusers folder (Node): config.json and diffusion_pytorch_model[.variant].safetensors,
   * which diffusers' from_pretrained loads.
   */
  async savePretrained(dirOrFileUrl: string | URL, options: SavePretrainedOptions = {}): Promise<void> {
    this.assertLive();
    // A folder with one half would not load in diffusers (missing keys): refuse rather than write it.
    if (this.components !== "both") this.missingHalf("savePretrained", `"both"`);
    const dir = await folderLocation(dirOrFileUrl);
    if (/^https?:/i.test(dir))
      throw new AutoencoderKLError(dir, "savePretrained writes a local folder: pass a path or a file: URL");
    const variant = options.variant;
    if (variant !== undefined && variant !== "fp16" && variant !== "bf16") {
      throw new AutoencoderKLError(
        "savePretrained: variant",
        `must be "fp16" or "bf16", got ${JSON.stringify(variant)}`,
      );
    }
    const { writeSafetensors } = await import("../../io/safetensors.js");
    const spec = "node:fs/promises";
    const fs = (await import(/* @vite-ignore */ spec)) as typeof import("node:fs/promises");
    const bytes = writeSafetensors(
      await this.stateDict(),
      { format: "pt" },
      { dtype: variant === "fp16" ? "F16" : variant === "bf16" ? "BF16" : "F32" },
    );
    await fs.mkdir(dir, { recursive: true });
    const config = {
      _class_name: "AutoencoderKL",
      _diffusers_version: this.config._diffusers_version ?? "0.32.2",
      ...this.config,
    };
    await fs.writeFile(`${dir}/config.json`, JSON.stringify(config, null, 2) + "\n");
    await fs.writeFile(`${dir}/diffusion_pytorch_model${variant ? "." + variant : ""}.safetensors`, bytes);
  }

  /** Which backend runs this model. */
  get backend(): BackendName {
    return this.kernels.name;
  }

  /** Backend detail (instruction set, threads, adapter). */
  get backendDescription(): string {
    return this.kernels.description;
  }

  /** Every parameter with its diffusers key and shape, in module order. */
  parameterShapes(): Map<string, number[]> {
    return new Map([...this.modules.parameters()].map((p) => [p.key, p.shape]));
  }

  /**
   * Loads weights: every key must be present with the right shape; tensors the model does not use are
   * skipped with a warning (`onWarning`), or rejected with `strict: true`. All problems are reported
   * together, by key, before any device memory is touched. A half model skips the other half's
   * tensors (expected, not "unexpected") and checks its own half only.
   */
  async loadStateDict(
    stateDict: Map<string, Tensor>,
    source = "state dict",
    options: LoadingOptions = {},
  ): Promise<void> {
    await this.loadWeights(tensorStreamOf(stateDict), source, options);
  }

  /**
   * loadStateDict from a stream: the shapes are checked first, then each tensor goes to the backend as it
   * is read (f16 bits for conv and linear weights with weightDtype "f16") and is not kept on the host.
   */
  private async loadWeights(weights: TensorStream, source: string, options: LoadingOptions): Promise<void> {
    this.assertLive();
    const params = [...this.modules.parameters()];
    const expected = new Map<string, Parameter>(params.map((p) => [p.key, p]));
    const missing: string[] = [],
      wrong: string[] = [],
      unexpected: string[] = [];
    for (const p of params) {
      const shape = weights.shapes.get(p.key);
      if (!shape) missing.push(`${p.key} ${describeShape(p.shape)}`);
      else if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
        wrong.push(`${p.key}: expected ${describeShape(p.shape)}, got ${describeShape(shape)}`);
      }
    }
    for (const [k, shape] of weights.shapes)
      if (!expected.has(k) && !isSkippedKey(k, this.components)) unexpected.push(`${k} ${describeShape(shape)}`);
    const list = (title: string, items: string[]) =>
      items.length
        ? `${title} (${items.length}): ${items.slice(0, 20).join("; ")}${items.length > 20 ? `; … ${items.length - 20} more` : ""}`
        : "";
    const strict = options.strict === true;
    if (missing.length || wrong.length || (strict && unexpected.length)) {
      const parts = [
        list("missing keys", missing),
        list("wrong shapes", wrong),
        strict ? list("unexpected keys", unexpected) : "",
      ].filter(Boolean);
      throw new AutoencoderKLError(source, `weights do not match the config: ${parts.join(" | ")}`);
    }
    if (unexpected.length)
      options.onWarning?.(`${source}: ignored tensors the model does not use: ${list("unexpected keys", unexpected)}`);
    this.modules.release(this.kernels);
    const k = this.kernels;
    const half = this.weightDtype === "f16";
    await weights.read(new Set(expected.keys()), (key, t) => {
      const p = expected.get(key)!;
      if (p.buf) throw new AutoencoderKLError(source, `tensor ${JSON.stringify(key)} was read twice`);
      if (half && storesHalf(p)) {
        // f16 files round-trip exactly; f32 and bf16 values are rounded to nearest even here
        p.buf = k.allocHalf(t.size);
        k.writeHalf(p.buf, f32ToF16(t.data));
      } else {
        p.buf = k.alloc(t.size);
        k.write(p.buf, t.data);
      }
      if (p.retainHost) p.host = Float32Array.from(t.data);
    });
    const unread = params.filter((p) => !p.buf).map((p) => p.key);
    if (unread.length) throw new AutoencoderKLError(source, `tensors not read: ${unread.slice(0, 5).join(", ")}`);
  }

  /** Reads every parameter back to the host, keyed as diffusers keys them. */
  async stateDict(): Promise<Map<string, Tensor>> {
    this.assertLive();
    const out = new Map<string, Tensor>();
    for (const p of this.modules.parameters()) out.set(p.key, new Tensor(await this.kernels.read(p.value), p.shape));
    return out;
  }

  /** Image-space side divided by this gives the latent side. */
  get downscaleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /** Latent tile side, as diffusers derives it from the sample tile side. */
  get tileLatentMinSize(): number {
    return Math.floor(this.tileSampleMinSize / this.downscaleFactor);
  }

  /** Encode and decode inputs larger than a tile in overlapping tiles (diffusers' algorithm). */
  enableTiling(options: TilingOptions = {}): void {
    const {
      tileSampleMinSize = this.config.sample_size,
      tileOverlapFactor = 0.25,
      mode = "blend",
      checkpointMiB = 256,
    } = options;
    if (!Number.isInteger(tileSampleMinSize) || tileSampleMinSize < this.downscaleFactor * 2) {
      throw new AutoencoderKLError(
        "enableTiling: tileSampleMinSize",
        `must be an integer ≥ ${this.downscaleFactor * 2} (two latent pixels), got ${tileSampleMinSize}`,
      );
    }
    if (typeof tileOverlapFactor !== "number" || !(tileOverlapFactor >= 0 && tileOverlapFactor < 1)) {
      throw new AutoencoderKLError(
        "enableTiling: tileOverlapFactor",
        `must be a number in [0, 1), got ${tileOverlapFactor}`,
      );
    }
    if (mode !== "blend" && mode !== "exact")
      throw new AutoencoderKLError(
        "enableTiling: mode",
        `unknown mode ${JSON.stringify(mode)}; expected "blend" or "exact"`,
      );
    if (mode === "exact" && tileSampleMinSize % this.downscaleFactor !== 0) {
      throw new AutoencoderKLError(
        "enableTiling: tileSampleMinSize",
        `exact mode needs a multiple of ${this.downscaleFactor}, got ${tileSampleMinSize}`,
      );
    }
    if (typeof checkpointMiB !== "number" || !(checkpointMiB >= 0)) {
      throw new AutoencoderKLError("enableTiling: checkpointMiB", `must be a number ≥ 0, got ${checkpointMiB}`);
    }
    this.tilingMode = mode;
    this.checkpointMiB = checkpointMiB;
    this.tileSampleMinSize = tileSampleMinSize;
    this.tileOverlapFactor = tileOverlapFactor;
    this.useTiling = true;
  }

  disableTiling(): void {
    this.useTiling = false;
  }

  /** Encode and decode one batch item at a time (lower peak memory, same results). */
  enableSlicing(): void {
    this.useSlicing = true;
  }
  disableSlicing(): void {
    this.useSlicing = false;
  }

  /** Encodes images [B, in_channels, H, W] (values in [-1, 1]) into the latent posterior. */
  async encode(x: Tensor, options: RunOptions = {}): Promise<{ latentDist: DiagonalGaussianDistribution }> {
    this.assertLive();
    this.requireHalf("encoder", "encode");
    this.checkInput(x, "encode: x", this.config.in_channels, this.minEncodeSize());
    const budget = this.budgetFor(options, "encode");
    if (budget !== null) {
      const plan = await this.planMemory("encode", x.shape, { maxMemoryMiB: budget });
      if (plan.mode === "exact") return this.exactEncode(x, options, this.exactOptions(plan));
    }
    const t = this.tileSampleMinSize;
    if (budget === null && this.useTiling && (x.shape[2] > t || x.shape[3] > t)) {
      return this.tilingMode === "exact" ? this.exactEncode(x, options) : this.tiledEncode(x, options);
    }
    const moments = await this.perItem(
      x,
      (item, ctx) => this.encodeMoments(item, ctx),
      options,
      "encode",
      this.modules.encoder!.steps,
    );
    return { latentDist: DiagonalGaussianDistribution.fromMoments(moments) };
  }

  /** diffusers' tiled_encode: overlapping image tiles, moments blended at the seams. */
  async tiledEncode(x: Tensor, options: RunOptions = {}): Promise<{ latentDist: DiagonalGaussianDistribution }> {
    this.assertLive();
    this.requireHalf("encoder", "tiledEncode");
    this.checkInput(x, "tiledEncode: x", this.config.in_channels, this.minEncodeSize());
    const grid: TileGrid = {
      tileIn: this.tileSampleMinSize,
      stride: Math.floor(this.tileSampleMinSize * (1 - this.tileOverlapFactor)),
      blendExtent: Math.floor(this.tileLatentMinSize * this.tileOverlapFactor),
      rowLimit: this.tileLatentMinSize - Math.floor(this.tileLatentMinSize * this.tileOverlapFactor),
    };
    // diffusers' loop can leave a sliver as the last tile; one smaller than the encoder's minimum has no output.
    const min = this.minEncodeSize();
    for (const [axis, size] of [
      ["height", x.shape[2]],
      ["width", x.shape[3]],
    ] as const) {
      const sliver = ((size - 1) % grid.stride) + 1;
      if (size > grid.stride && sliver < min) {
        throw new AutoencoderKLError(
          "tiledEncode: x",
          `with tiles of ${grid.tileIn} px every ${grid.stride} px, the last tile along the ${axis} (${size} px) is ${sliver} px, below the encoder's minimum of ${min}; choose another tileSampleMinSize or pad the image`,
        );
      }
    }
    const moments = await this.withTiles(x, grid, "encode", this.modules.encoder!.steps, options, (tile, ctx) =>
      this.encodeMoments(tile, ctx),
    );
    return { latentDist: DiagonalGaussianDistribution.fromMoments(moments) };
  }

  /** Decodes latents [B, latent_channels, h, w] into images [B, out_channels, h·2^(levels-1), w·2^(levels-1)]. */
  async decode(z: Tensor, options: RunOptions = {}): Promise<{ sample: Tensor }> {
    this.assertLive();
    this.requireHalf("decoder", "decode");
    this.checkInput(z, "decode: z", this.config.latent_channels, 1);
    const budget = this.budgetFor(options, "decode");
    if (budget !== null) {
      const plan = await this.planMemory("decode", z.shape, { maxMemoryMiB: budget });
      if (plan.mode === "exact") return this.exactDecode(z, options, this.exactOptions(plan));
    }
    const t = this.tileLatentMinSize;
    if (budget === null && this.useTiling && (z.shape[2] > t || z.shape[3] > t)) {
      return this.tilingMode === "exact" ? this.exactDecode(z, options) : this.tiledDecode(z, options);
    }
    const sample = await this.perItem(
      z,
      (item, ctx) => this.decodeSample(item, ctx),
      options,
      "decode",
      this.modules.decoder!.steps,
    );
    return { sample };
  }

  /** diffusers' tiled_decode: overlapping latent tiles, images blended at the seams. */
  async tiledDecode(z: Tensor, options: RunOptions = {}): Promise<{ sample: Tensor }> {
    this.assertLive();
    this.requireHalf("decoder", "tiledDecode");
    this.checkInput(z, "tiledDecode: z", this.config.latent_channels, 1);
    const grid: TileGrid = {
      tileIn: this.tileLatentMinSize,
      stride: Math.max(1, Math.floor(this.tileLatentMinSize * (1 - this.tileOverlapFactor))),
      blendExtent: Math.floor(this.tileSampleMinSize * this.tileOverlapFactor),
      rowLimit: this.tileSampleMinSize - Math.floor(this.tileSampleMinSize * this.tileOverlapFactor),
    };
    const sample = await this.withTiles(z, grid, "decode", this.modules.decoder!.steps, options, (tile, ctx) =>
      this.decodeSample(tile, ctx),
    );
    return { sample };
  }

  /** Exact tiled encode: the encode program with its full-resolution part in tiles (exact-tiling.ts). */
  private async exactEncode(
    x: Tensor,
    options: RunOptions,
    tiling: ExactTilingOptions = this.tilingOptions(this.tileSampleMinSize),
  ): Promise<{ latentDist: DiagonalGaussianDistribution }> {
    const program = this.modules.encodeProgram();
    const ctx = new RunContext(this.kernels, "encode", exactSteps(program, x.shape, tiling), options);
    try {
      const moments = await runExactProgram(ctx, program, x, tiling, () => ctx.step());
      return { latentDist: DiagonalGaussianDistribution.fromMoments(moments) };
    } finally {
      ctx.releaseAll();
    }
  }

  /** Exact tiled decode: the decode program with its full-resolution part in tiles (exact-tiling.ts). */
  private async exactDecode(
    z: Tensor,
    options: RunOptions,
    tiling: ExactTilingOptions = this.tilingOptions(this.tileLatentMinSize),
  ): Promise<{ sample: Tensor }> {
    const program = this.modules.decodeProgram();
    const ctx = new RunContext(this.kernels, "decode", exactSteps(program, z.shape, tiling), options);
    try {
      return { sample: await runExactProgram(ctx, program, z, tiling, () => ctx.step()) };
    } finally {
      ctx.releaseAll();
    }
  }

  // ---- memory budget ----

  /** The model's memory budget in MiB (null: none); `decode(z, { maxMemoryMiB })` overrides it per call. */
  get maxMemoryMiB(): number | null {
    return this.budgetMiB;
  }
  set maxMemoryMiB(value: number | null) {
    this.budgetMiB = checkBudget(value, "maxMemoryMiB");
  }

  /**
   * How an encode or decode of an input of `shape` would run under a budget (default: the model's): untiled or
   * exact tiling with which tile side and checkpoint budget, the predicted process peak and its parts, and the
   * convolution work relative to untiled. Without any budget, the untiled plan and its prediction. Throws
   * AutoencoderKLError, naming the smallest plan, when nothing fits.
   */
  async planMemory(
    kind: "encode" | "decode",
    shape: readonly number[],
    options: { maxMemoryMiB?: number | null } = {},
  ): Promise<MemoryPlan> {
    this.assertLive();
    if (kind !== "encode" && kind !== "decode")
      throw new AutoencoderKLError("planMemory: kind", `must be "encode" or "decode", got ${JSON.stringify(kind)}`);
    this.requireHalf(kind === "encode" ? "encoder" : "decoder", "planMemory");
    const budget =
      options.maxMemoryMiB === undefined
        ? this.budgetMiB
        : checkBudget(options.maxMemoryMiB, "planMemory: maxMemoryMiB");
    const channels = kind === "encode" ? this.config.in_channels : this.config.latent_channels;
    this.checkInput(Tensor.zeros(shape), `planMemory: shape`, channels, kind === "encode" ? this.minEncodeSize() : 1);
    let weightsBytes = 0;
    // The probe only reads shapes; an unloaded model (info) gets stand-ins for its weights while it plans.
    const standIns: Parameter[] = [];
    for (const p of this.modules.parameters()) {
      // f16 weights take 2 bytes on wasm and webgpu (the reference backend widens them)
      const half = p.buf ? p.buf.dtype === "f16" : this.weightDtype === "f16" && storesHalf(p);
      weightsBytes += (p.buf?.length ?? p.size) * (half && this.kernels.name !== "reference" ? 2 : 4);
      if (!p.buf) {
        p.buf = { length: p.size };
        standIns.push(p);
      }
    }
    const inputs = {
      kernels: this.kernels,
      program: kind === "encode" ? this.modules.encodeProgram() : this.modules.decodeProgram(),
      inputShape: shape,
      weightsBytes,
      runtimeBytes: runtimeAllowanceBytes((this.kernels as { threads?: number }).threads ?? 1),
      tileUnit: kind === "encode" ? this.downscaleFactor : 1,
      storage: this.checkpointStorage ?? undefined,
    };
    // without a budget, what encode/decode would run: the tiling enableTiling set, when the input exceeds a tile
    const tile = kind === "encode" ? this.tileSampleMinSize : this.tileLatentMinSize;
    const tiled = budget === null && this.useTiling && (shape[2] > tile || shape[3] > tile);
    try {
      return tiled
        ? await predictTiling(inputs, { mode: this.tilingMode, tileSize: tile, checkpointMiB: this.checkpointMiB })
        : await planMemory(inputs, budget, `${kind}: maxMemoryMiB`);
    } finally {
      for (const p of standIns) p.buf = null;
    }
  }

  /** The budget for one call: the call's own, else the model's. */
  private budgetFor(options: RunOptions, call: string): number | null {
    return options.maxMemoryMiB === undefined
      ? this.budgetMiB
      : checkBudget(options.maxMemoryMiB, `${call}: options.maxMemoryMiB`);
  }

  private exactOptions(plan: MemoryPlan): ExactTilingOptions {
    const { resnetCheckpoints } = plan;
    return plan.storedCheckpoints && this.checkpointStorage
      ? {
          tileSize: plan.tileSize!,
          checkpointBytes: Number.POSITIVE_INFINITY,
          storage: this.checkpointStorage,
          resnetCheckpoints,
        }
      : { tileSize: plan.tileSize!, checkpointBytes: plan.checkpointMiB! * 2 ** 20, resnetCheckpoints };
  }

  /** Exact tiling as enableTiling set it: every checkpoint stored when the model has a checkpointStorage. */
  private tilingOptions(tileSize: number): ExactTilingOptions {
    return this.checkpointStorage
      ? { tileSize, checkpointBytes: Number.POSITIVE_INFINITY, storage: this.checkpointStorage }
      : { tileSize, checkpointBytes: this.checkpointMiB * 2 ** 20 };
  }

  // ---- attention processors (keys are the diffusers module paths + ".processor") ----

  private attentions(): Attention[] {
    return [...this.modules.modules()].filter((m): m is Attention => m instanceof Attention);
  }

  /** The processor of every attention module, keyed like diffusers: "encoder.mid_block.attentions.0.processor". */
  get attnProcessors(): Record<string, AttentionProcessor> {
    return Object.fromEntries(this.attentions().map((a) => [`${a.prefix}.processor`, a.processor]));
  }

  /** Sets one processor for every attention module, or a map with exactly one entry per module. */
  setAttnProcessor(processor: AttentionProcessor | Record<string, AttentionProcessor>): void {
    const attns = this.attentions();
    const isProcessor = (p: unknown): p is AttentionProcessor => typeof (p as AttentionProcessor)?.run === "function";
    if (isProcessor(processor)) {
      for (const a of attns) a.processor = processor;
      return;
    }
    if (processor === null || typeof processor !== "object")
      throw new AutoencoderKLError("setAttnProcessor", "expects a processor or a map of processors");
    const keys = attns.map((a) => `${a.prefix}.processor`);
    const given = Object.keys(processor);
    const missing = keys.filter((k) => !given.includes(k)),
      extra = given.filter((k) => !keys.includes(k));
    if (missing.length || extra.length) {
      throw new AutoencoderKLError(
        "setAttnProcessor",
        `the map must have one processor per attention module; missing: [${missing.join(", ")}], unknown: [${extra.join(", ")}]`,
      );
    }
    attns.forEach((a, i) => {
      const p = processor[keys[i]];
      if (!isProcessor(p))
        throw new AutoencoderKLError(`setAttnProcessor: ${keys[i]}`, "is not a processor (needs a run method)");
      a.processor = p;
    });
  }

  setDefaultAttnProcessor(): void {
    this.setAttnProcessor(new MemoryEfficientAttnProcessor());
  }

  /** One [3C, C] projection for q, k and v in every attention module (same results, one pass over the tokens). */
  fuseQkvProjections(): void {
    this.assertLive();
    this.setAttnProcessor(new FusedAttnProcessor());
  }

  /** Back to separate q/k/v projections and the default processor; frees the stacked weights. */
  unfuseQkvProjections(): void {
    this.assertLive();
    for (const a of this.attentions()) a.releaseFused(this.kernels);
    this.setDefaultAttnProcessor();
  }

  /** encode → mode (or a sample) → decode, as diffusers' forward. */
  async forward(x: Tensor, options: ForwardOptions = {}): Promise<{ sample: Tensor }> {
    this.assertLive();
    if (this.components !== "both") this.missingHalf("forward", `"both"`);
    const { latentDist } = await this.encode(x, options);
    const z = options.samplePosterior
      ? latentDist.sample({ seed: options.seed, noise: options.noise })
      : latentDist.mode();
    return this.decode(z, options);
  }

  /** Frees the weights and (if the model created it) the backend. Further calls throw. */
  dispose(): void {
    if (this.disposed) return;
    this.modules.release(this.kernels);
    if (this.ownsKernels) this.kernels.dispose();
    this.disposed = true;
  }

  // ---- internals ----

  private assertLive(): void {
    if (this.disposed) throw new AutoencoderKLError("AutoencoderKL", "the model was disposed");
  }

  /** Calling a half this model did not load is a usage error that names the option to change. */
  private requireHalf(half: "encoder" | "decoder", call: string): void {
    if (this.components !== "both" && this.components !== half) this.missingHalf(call, `"${half}" or "both"`);
  }

  private missingHalf(call: string, needed: string): never {
    throw new AutoencoderKLError(
      call,
      `this model was loaded with components: "${this.components}", so it has no ${this.components === "decoder" ? "encoder" : "decoder"}; load it with components: ${needed} to call ${call}`,
    );
  }

  /** Smallest side the encoder accepts: each Downsample2D maps s to floor((s - 2) / 2) + 1, which must stay ≥ 1. */
  private minEncodeSize(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  private checkInput(x: Tensor, what: string, channels: number, minSide: number): void {
    if (!(x instanceof Tensor)) throw new AutoencoderKLError(what, "must be a Tensor");
    if (x.rank !== 4)
      throw new AutoencoderKLError(
        what,
        `must have rank 4 [batch, channels, height, width], got shape ${describeShape(x.shape)}`,
      );
    if (x.shape[1] !== channels) {
      throw new AutoencoderKLError(
        what,
        `has ${x.shape[1]} channels, the model expects ${channels} (shape ${describeShape(x.shape)})`,
      );
    }
    if (x.shape[0] < 1 || x.shape[2] < minSide || x.shape[3] < minSide) {
      throw new AutoencoderKLError(
        what,
        `batch must be ≥ 1 and height and width ≥ ${minSide}, got shape ${describeShape(x.shape)}`,
      );
    }
  }

  /** Runs `fn` on the whole batch, or one item at a time when slicing is on, and concatenates. */
  private async perItem(
    x: Tensor,
    fn: (item: Tensor, ctx: RunContext) => Promise<Tensor>,
    options: RunOptions,
    stage: string,
    steps: number,
  ): Promise<Tensor> {
    const batch = x.shape[0];
    const items = this.useSlicing && batch > 1 ? batch : 1;
    const ctx = new RunContext(this.kernels, stage, steps * items, options);
    const outs: Tensor[] = [];
    try {
      if (items === 1) return await fn(x, ctx);
      const per = x.size / batch;
      for (let n = 0; n < batch; n++) {
        outs.push(await fn(new Tensor(x.data.subarray(n * per, (n + 1) * per), [1, ...x.shape.slice(1)]), ctx));
      }
    } finally {
      ctx.releaseAll();
    }
    const each = outs[0].size;
    const data = new Float32Array(each * batch);
    for (const [n, t] of outs.entries()) data.set(t.data, n * each);
    return new Tensor(data, [batch, ...outs[0].shape.slice(1)]);
  }

  /** One progress/abort context over all tiles; every tile's device memory is released even on abort. */
  private async withTiles(
    x: Tensor,
    grid: TileGrid,
    stage: string,
    steps: number,
    options: RunOptions,
    fn: (tile: Tensor, ctx: RunContext) => Promise<Tensor>,
  ): Promise<Tensor> {
    const count = Math.ceil(x.shape[2] / grid.stride) * Math.ceil(x.shape[3] / grid.stride);
    const ctx = new RunContext(this.kernels, stage, steps * count, options);
    try {
      return await runTiled(x, grid, (tile) => fn(tile, ctx));
    } finally {
      ctx.releaseAll();
    }
  }

  private upload(ctx: RunContext, x: Tensor): DeviceTensor {
    const t = ctx.alloc(x.shape);
    ctx.k.write(t.buf, x.data);
    return t;
  }

  private async download(ctx: RunContext, t: DeviceTensor): Promise<Tensor> {
    const data = await ctx.k.read(t.buf);
    ctx.free(t);
    return new Tensor(data, t.shape);
  }

  private async encodeMoments(x: Tensor, ctx: RunContext): Promise<Tensor> {
    const input = this.upload(ctx, x);
    const h = await runProgram(ctx, this.modules.encodeProgram(), input);
    ctx.free(input);
    return this.download(ctx, h);
  }

  private async decodeSample(z: Tensor, ctx: RunContext): Promise<Tensor> {
    const input = this.upload(ctx, z);
    const out = await runProgram(ctx, this.modules.decodeProgram(), input);
    ctx.free(input);
    return this.download(ctx, out);
  }
}
