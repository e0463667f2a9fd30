/**
 * Single-file checkpoints (what fromSingleFile loads): a whole Stable Diffusion model or a VAE alone,
 * as safetensors or a PyTorch pickle (.ckpt/.bin/.pt), with original latent-diffusion or diffusers
 * names. Only the VAE's tensors are ever converted; the config is inferred from their shapes.
 */
import { AutoencoderKLError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { type Components, isSkippedKey } from "./components.js";
import { inferVaeConfig, type Shaped } from "./infer-config.js";
import { convertVaeShape, convertVaeTensor, planVaeKeys } from "./original-keys.js";
import {
  checkSafetensorsEntry,
  readSafetensorsHeader,
  readSafetensorsTensor,
  type SafetensorsEntry,
} from "./safetensors.js";
import { readSafetensorsHeaderRanged, streamSafetensorsEntriesRanged } from "./safetensors-ranges.js";
import { type ByteSource, describeSource, openRandomAccess, type RandomAccessSource, readSource } from "./source.js";
import { closeOnce, collectTensorStream, type TensorStream, tensorStreamOf } from "./tensor-stream.js";
import {
  readTorchCheckpoint,
  readTorchCheckpointAsync,
  readTorchZipRanged,
  type TorchCheckpoint,
} from "./torch-checkpoint.js";
import { isZip } from "./zip.js";

export interface ReadSingleFileOptions {
  /** Config fields that override the inferred ones (norm_num_groups, sample_size, scaling_factor… can't be inferred). */
  config?: object;
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
  /** Which half of the VAE to read (default both); the other half is skipped unread where ranges allow. */
  components?: Components;
}

export interface SingleFileResult {
  config: Record<string, unknown>;
  stateDict: Map<string, Tensor>;
}

export type SingleFileFormat = "safetensors" | "torch";

/** Content sniffing: torch's zip (PK), a pickle (protocol byte 0x80), else safetensors. */
export function detectSingleFileFormat(bytes: Uint8Array): SingleFileFormat {
  if (isZip(bytes) || (bytes.length > 0 && bytes[0] === 0x80)) return "torch";
  return "safetensors";
}

function noVae(source: string, skipped: string[]): never {
  const sample = skipped
    .slice(0, 3)
    .map((n) => JSON.stringify(n))
    .join(", ");
  throw new AutoencoderKLError(
    source,
    `no VAE tensors found (expected first_stage_model.*, encoder.*, decoder.* keys${sample ? `; found e.g. ${sample}` : ""})`,
  );
}

/** A reader's result: the tensors kept, and the shapes of every VAE tensor (the config is inferred from these). */
interface Loaded {
  stateDict: Map<string, Tensor>;
  shapes: ReadonlyMap<string, Shaped>;
}

/** The same, with the kept tensors still to be read. */
interface Streamed {
  weights: TensorStream;
  shapes: ReadonlyMap<string, Shaped>;
}

/**
 * Pickles have no index to read by ranges: a legacy pickle (or one in memory) is converted whole, then
 * the half left out by `components` is dropped before the model sees it.
 */
function whole(stateDict: Map<string, Tensor>, components: Components = "both"): Loaded {
  const shapes = new Map(stateDict);
  for (const key of shapes.keys()) if (isSkippedKey(key, components)) stateDict.delete(key);
  return { stateDict, shapes };
}

function withConfig({ stateDict, shapes }: Loaded, source: string, config: object | undefined): SingleFileResult {
  if (config !== undefined && (config === null || typeof config !== "object" || Array.isArray(config))) {
    throw new AutoencoderKLError(source, "options.config must be an object");
  }
  const inferred = inferVaeConfig(shapes, source);
  const merged: Record<string, unknown> = { ...inferred };
  for (const [k, v] of Object.entries(config ?? {})) {
    if (k === "__proto__" || v === undefined) continue;
    merged[k] = v;
  }
  return { config: merged, stateDict };
}

/** Safetensors in memory: the header's shapes infer the config; the half left out is never converted. */
function fromSafetensors(bytes: Uint8Array, source: string, components: Components = "both"): Loaded {
  const header = readSafetensorsHeader(bytes, source);
  const plan = planVaeKeys(
    header.entries.map((e) => e.name),
    source,
  );
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const stateDict = new Map<string, Tensor>();
  const shapes = new Map<string, Shaped>();
  for (const entry of header.entries) {
    const target = plan.rename.get(entry.name);
    if (target === undefined) continue; // other models' tensors: validated by the header, never converted
    shapes.set(target, entry);
    if (isSkippedKey(target, components)) continue;
    stateDict.set(target, convertVaeTensor(target, readSafetensorsTensor(bytes, entry, source), source));
  }
  return { stateDict, shapes };
}

function fromTorch(ckpt: TorchCheckpoint, source: string): Map<string, Tensor> {
  const plan = planVaeKeys(ckpt.tensors.keys(), source);
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const stateDict = new Map<string, Tensor>();
  for (const [name, target] of plan.rename) stateDict.set(target, convertVaeTensor(target, ckpt.load(name), source));
  return stateDict;
}

/** Synchronous core for bytes already in memory (torch zips must be stored, as torch.save writes them). */
export function convertSingleFile(
  bytes: Uint8Array,
  source = "single file",
  options: { config?: object; components?: Components } = {},
): SingleFileResult {
  const loaded =
    detectSingleFileFormat(bytes) === "torch"
      ? whole(fromTorch(readTorchCheckpoint(bytes, source), source), options.components)
      : fromSafetensors(bytes, source, options.components);
  return withConfig(loaded, source, options.config);
}

/**
 * Safetensors through ranged reads: the header, then only the VAE's byte ranges (of the half that
 * `components` keeps), streamed tensor by tensor when the model reads them. A 7 GB SDXL checkpoint costs
 * its VAE's ~160 MB of reads, a decoder-only load its decoder's, and no more than one range is held.
 */
async function fromSafetensorsRanges(
  ra: RandomAccessSource,
  first8: Uint8Array,
  options: ReadSingleFileOptions,
): Promise<Streamed> {
  const source = ra.name;
  const ranged = await readSafetensorsHeaderRanged(ra, first8);
  const { entries } = ranged.header;
  const plan = planVaeKeys(
    entries.map((e) => e.name),
    source,
  );
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const components = options.components ?? "both";
  const vae = entries.filter((e) => plan.rename.has(e.name));
  const skip = (e: SafetensorsEntry) => isSkippedKey(plan.rename.get(e.name)!, components);
  const kept = vae.filter((e) => !skip(e));
  const excluded = vae.filter(skip);
  // every kept tensor's dtype, size and layout checked from the header, before anything is read
  const shapes = new Map<string, readonly number[]>();
  for (const e of kept) {
    checkSafetensorsEntry(e, source);
    const target = plan.rename.get(e.name)!;
    shapes.set(target, convertVaeShape(target, e.shape, source));
  }
  const close = closeOnce(ra);
  const weights: TensorStream = {
    shapes,
    async read(keys, take) {
      try {
        await streamSafetensorsEntriesRanged(
          ra,
          ranged,
          kept.filter((e) => keys.has(plan.rename.get(e.name)!)),
          { onProgress: options.onProgress, signal: options.signal, exclude: excluded },
          (e, t) => {
            const target = plan.rename.get(e.name)!;
            take(target, convertVaeTensor(target, t, source));
          },
        );
      } finally {
        await close();
      }
    },
    close,
  };
  // The config comes from the header's shapes of the whole VAE, so a half load infers the same one.
  return { weights, shapes: new Map(vae.map((e) => [plan.rename.get(e.name)!, e])) };
}

/** torch zips by ranges too: directory, data.pkl, then only the VAE's storages (legacy pickles are read whole). */
async function fromTorchZipRanges(ra: RandomAccessSource, options: ReadSingleFileOptions): Promise<Loaded> {
  const ckpt = await readTorchZipRanged(ra, ra.name);
  const plan = planVaeKeys(ckpt.tensors.keys(), ra.name);
  if (plan.rename.size === 0) noVae(ra.name, plan.skipped);
  options.signal?.throwIfAborted();
  // Only the kept half's storages are requested (small neighbours may share a coalesced read).
  const kept = [...plan.rename].filter(([, target]) => !isSkippedKey(target, options.components ?? "both"));
  await ckpt.prefetch(
    kept.map(([name]) => name),
    options.onProgress,
  );
  const stateDict = new Map<string, Tensor>();
  for (const [name, target] of kept) stateDict.set(target, convertVaeTensor(target, ckpt.load(name), ra.name));
  return { stateDict, shapes: new Map([...plan.rename].map(([name, target]) => [target, ckpt.tensors.get(name)!])) };
}

/** Read a single-file checkpoint from a path, URL, Blob or bytes: diffusers-keyed VAE state dict + config. */
export async function readSingleFile(
  source: ByteSource,
  options: ReadSingleFileOptions = {},
): Promise<SingleFileResult> {
  const { config, weights } = await openSingleFile(source, options);
  return { config, stateDict: await collectTensorStream(weights) };
}

/**
 * readSingleFile with the weights as a stream: safetensors by ranges (paths, URLs whose server does ranges,
 * Blobs) are read tensor by tensor when the stream is read; other formats are converted whole first.
 * Close the stream when not reading it.
 */
export async function openSingleFile(
  source: ByteSource,
  options: ReadSingleFileOptions = {},
): Promise<{ config: Record<string, unknown>; weights: TensorStream }> {
  const name = describeSource(source);
  if (!(source instanceof Uint8Array) && !(source instanceof ArrayBuffer)) {
    const ra = await openRandomAccess(source, { signal: options.signal });
    if (ra) {
      let streaming = false;
      try {
        const first8 = await ra.read(0, Math.min(8, ra.size));
        if (detectSingleFileFormat(first8) === "safetensors") {
          const streamed = await fromSafetensorsRanges(ra, first8, options);
          const { config } = withConfig({ stateDict: new Map(), shapes: streamed.shapes }, name, options.config);
          streaming = true; // the stream closes the source from here on
          return { config, weights: streamed.weights };
        }
        if (isZip(first8)) return streamOf(withConfig(await fromTorchZipRanges(ra, options), name, options.config));
      } finally {
        if (!streaming) await ra.close();
      }
    }
  }
  // Pickles (and servers without ranges) are read whole.
  const bytes = await readSource(source, { onProgress: options.onProgress, signal: options.signal });
  if (detectSingleFileFormat(bytes) === "torch") {
    const ckpt = await readTorchCheckpointAsync(bytes, name);
    return streamOf(withConfig(whole(fromTorch(ckpt, name), options.components), name, options.config));
  }
  // Safetensors in memory stream too (views of the bytes): each tensor is converted as the model takes it,
  // so no whole f32 state dict sits next to the file's bytes.
  const memory: RandomAccessSource = {
    name,
    size: bytes.length,
    read: async (start, end) => bytes.subarray(start, end),
    close: async () => {},
  };
  const first8 = bytes.subarray(0, Math.min(8, bytes.length));
  // progress was reported by the whole read
  const streamed = await fromSafetensorsRanges(memory, first8, { ...options, onProgress: undefined });
  const { config } = withConfig({ stateDict: new Map(), shapes: streamed.shapes }, name, options.config);
  return { config, weights: streamed.weights };
}

function streamOf({ config, stateDict }: SingleFileResult): { config: Record<string, unknown>; weights: TensorStream } {
  return { config, weights: tensorStreamOf(stateDict) };
}
