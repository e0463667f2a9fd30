/**
 * Single-file checkpoints (what fromSingleFile loads): a whole Stable Diffusion model or a VAE alone,
 * as safetensors or a PyTorch pickle (.ckpt/.bin/.pt), with original latent-diffusion or diffusers
 * names. Only the VAE's tensors are ever converted; the config is inferred from their shapes.
 */
import { AutoencoderKLError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { inferVaeConfig } from "./infer-config.js";
import { convertVaeTensor, planVaeKeys } from "./original-keys.js";
import { readTorchCheckpoint, readTorchCheckpointAsync, readTorchZipRanged, type TorchCheckpoint } from "./torch-checkpoint.js";
import { parseSafetensorsHeader, readSafetensorsHeader, readSafetensorsTensor, safetensorsHeaderLength } from "./safetensors.js";
import { describeSource, openRandomAccess, readSource, type ByteSource, type RandomAccessSource } from "./source.js";
import { isZip } from "./zip.js";

export interface ReadSingleFileOptions {
  /** Config fields that override the inferred ones (norm_num_groups, sample_size, scaling_factor… can't be inferred). */
  config?: object;
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
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
  const sample = skipped.slice(0, 3).map((n) => JSON.stringify(n)).join(", ");
  throw new AutoencoderKLError(
    source,
    `no VAE tensors found (expected first_stage_model.*, encoder.*, decoder.* keys${sample ? `; found e.g. ${sample}` : ""})`,
  );
}

function withConfig(stateDict: Map<string, Tensor>, source: string, config: object | undefined): SingleFileResult {
  if (config !== undefined && (config === null || typeof config !== "object" || Array.isArray(config))) {
    throw new AutoencoderKLError(source, "options.config must be an object");
  }
  const inferred = inferVaeConfig(stateDict, source);
  const merged: Record<string, unknown> = { ...inferred };
  for (const [k, v] of Object.entries(config ?? {})) {
    if (k === "__proto__" || v === undefined) continue;
    merged[k] = v;
  }
  return { config: merged, stateDict };
}

function fromSafetensors(bytes: Uint8Array, source: string): Map<string, Tensor> {
  const header = readSafetensorsHeader(bytes, source);
  const plan = planVaeKeys(
    header.entries.map((e) => e.name),
    source,
  );
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const stateDict = new Map<string, Tensor>();
  for (const entry of header.entries) {
    const target = plan.rename.get(entry.name);
    if (target === undefined) continue; // other models' tensors: validated by the header, never converted
    stateDict.set(target, convertVaeTensor(target, readSafetensorsTensor(bytes, entry, source), source));
  }
  return stateDict;
}

function fromTorch(ckpt: TorchCheckpoint, source: string): Map<string, Tensor> {
  const plan = planVaeKeys(ckpt.tensors.keys(), source);
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const stateDict = new Map<string, Tensor>();
  for (const [name, target] of plan.rename) stateDict.set(target, convertVaeTensor(target, ckpt.load(name), source));
  return stateDict;
}

/** Synchronous core for bytes already in memory (torch zips must be stored, as torch.save writes them). */
export function convertSingleFile(bytes: Uint8Array, source = "single file", options: { config?: object } = {}): SingleFileResult {
  const stateDict =
    detectSingleFileFormat(bytes) === "torch" ? fromTorch(readTorchCheckpoint(bytes, source), source) : fromSafetensors(bytes, source);
  return withConfig(stateDict, source, options.config);
}

/** Coalesced reads: neighbours closer than this share one request; no single read grows past the cap. */
const MERGE_GAP = 1 << 20;
const MAX_READ = 64 << 20;

/**
 * Safetensors through ranged reads: the header, then only the VAE's byte ranges. A 7 GB SDXL
 * checkpoint costs its VAE's ~160 MB, and files past the 4 GiB typed-array limit still load.
 */
async function fromSafetensorsRanges(ra: RandomAccessSource, first8: Uint8Array, options: ReadSingleFileOptions): Promise<Map<string, Tensor>> {
  const source = ra.name;
  const headerLength = safetensorsHeaderLength(first8, ra.size, source);
  const header = parseSafetensorsHeader(await ra.read(0, 8 + headerLength), ra.size, source);
  const plan = planVaeKeys(
    header.entries.map((e) => e.name),
    source,
  );
  if (plan.rename.size === 0) noVae(source, plan.skipped);
  const wanted = header.entries.filter((e) => plan.rename.has(e.name)).sort((a, b) => a.start - b.start);
  const total = 8 + headerLength + wanted.reduce((n, e) => n + e.end - e.start, 0);
  let loaded = 8 + headerLength;
  options.onProgress?.(loaded, total);

  const byName = new Map<string, Tensor>();
  for (let i = 0; i < wanted.length; ) {
    let j = i + 1;
    while (j < wanted.length && wanted[j].start - wanted[j - 1].end <= MERGE_GAP && wanted[j].end - wanted[i].start <= MAX_READ) j++;
    options.signal?.throwIfAborted();
    const base = wanted[i].start;
    const buf = await ra.read(base, wanted[j - 1].end);
    for (const e of wanted.slice(i, j)) {
      const target = plan.rename.get(e.name)!;
      const local = { ...e, start: e.start - base, end: e.end - base };
      byName.set(e.name, convertVaeTensor(target, readSafetensorsTensor(buf, local, source), source));
      loaded += e.end - e.start;
    }
    options.onProgress?.(loaded, total);
    i = j;
  }
  // In the file's order, as the whole-file path gives it.
  const stateDict = new Map<string, Tensor>();
  for (const e of header.entries) {
    const t = byName.get(e.name);
    if (t) stateDict.set(plan.rename.get(e.name)!, t);
  }
  return stateDict;
}

/** torch zips by ranges too: directory, data.pkl, then only the VAE's storages (legacy pickles are read whole). */
async function fromTorchZipRanges(ra: RandomAccessSource, options: ReadSingleFileOptions): Promise<Map<string, Tensor>> {
  const ckpt = await readTorchZipRanged(ra, ra.name);
  const plan = planVaeKeys(ckpt.tensors.keys(), ra.name);
  if (plan.rename.size === 0) noVae(ra.name, plan.skipped);
  options.signal?.throwIfAborted();
  await ckpt.prefetch(plan.rename.keys(), options.onProgress);
  const stateDict = new Map<string, Tensor>();
  for (const [name, target] of plan.rename) stateDict.set(target, convertVaeTensor(target, ckpt.load(name), ra.name));
  return stateDict;
}

/** Read a single-file checkpoint from a path, URL, Blob or bytes: diffusers-keyed VAE state dict + config. */
export async function readSingleFile(source: ByteSource, options: ReadSingleFileOptions = {}): Promise<SingleFileResult> {
  const name = describeSource(source);
  if (!(source instanceof Uint8Array) && !(source instanceof ArrayBuffer)) {
    const ra = await openRandomAccess(source, { signal: options.signal });
    if (ra) {
      try {
        const first8 = await ra.read(0, Math.min(8, ra.size));
        if (detectSingleFileFormat(first8) === "safetensors") {
          return withConfig(await fromSafetensorsRanges(ra, first8, options), name, options.config);
        }
        if (isZip(first8)) return withConfig(await fromTorchZipRanges(ra, options), name, options.config);
      } finally {
        await ra.close();
      }
    }
  }
  // Pickles (and servers without ranges) are read whole.
  const bytes = await readSource(source, { onProgress: options.onProgress, signal: options.signal });
  if (detectSingleFileFormat(bytes) === "torch") {
    const ckpt = await readTorchCheckpointAsync(bytes, name);
    return withConfig(fromTorch(ckpt, name), name, options.config);
  }
  return withConfig(fromSafetensors(bytes, name), name, options.config);
}
