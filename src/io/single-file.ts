/**
 * Single-file checkpoints (what fromSingleFile loads): a whole Stable Diffusion model or a VAE alone,
 * as safetensors or a PyTorch pickle (.ckpt/.bin/.pt), with original latent-diffusion or diffusers
 * names. Only the VAE's tensors are ever converted; the config is inferred from their shapes.
 */
import { AutoencoderKLError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { inferVaeConfig } from "./infer-config.js";
import { convertVaeTensor, planVaeKeys } from "./original-keys.js";
import { readTorchCheckpoint, readTorchCheckpointAsync, type TorchCheckpoint } from "./pickle.js";
import { readSafetensorsHeader, readSafetensorsTensor } from "./safetensors.js";
import { describeSource, readSource, type ByteSource } from "./source.js";
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

/** Read a single-file checkpoint from a path, URL, Blob or bytes: diffusers-keyed VAE state dict + config. */
export async function readSingleFile(source: ByteSource, options: ReadSingleFileOptions = {}): Promise<SingleFileResult> {
  const name = describeSource(source);
  const bytes = await readSource(source, { onProgress: options.onProgress, signal: options.signal });
  if (detectSingleFileFormat(bytes) === "torch") {
    const ckpt = await readTorchCheckpointAsync(bytes, name);
    return withConfig(fromTorch(ckpt, name), name, options.config);
  }
  return withConfig(fromSafetensors(bytes, name), name, options.config);
}
