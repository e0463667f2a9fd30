import { AutoencoderKLError } from "../errors.js";
import { isNode } from "../platform.js";
import type { Tensor } from "../tensor/tensor.js";
import { type Components, type ComponentsOptions, isSkippedKey } from "./components.js";
import { checkSafetensorsEntry } from "./safetensors.js";
import { readSafetensorsHeaderRanged, streamSafetensorsEntriesRanged } from "./safetensors-ranges.js";
import { openRandomAccess } from "./source.js";
import { closeOnce, collectTensorStream, type TensorStream, tensorStreamOf } from "./tensor-stream.js";

export interface PretrainedOptions extends ComponentsOptions {
  /** Folder inside the repo/dir holding config.json (e.g. "vae" in a Stable Diffusion pipeline folder). */
  subfolder?: string;
  /** Weight file variant: diffusion_pytorch_model.<variant>.safetensors. */
  variant?: "fp16" | "bf16" | string;
  /** Load diffusion_flax_model.msgpack (Flax layout) instead of PyTorch weights. */
  fromFlax?: boolean;
}

export interface PretrainedFiles {
  config: unknown;
  stateDict: Map<string, Tensor>;
  source: { config: string; weights: string };
}

export interface PretrainedStream {
  config: unknown;
  weights: TensorStream;
  source: { config: string; weights: string };
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/**
 * A folder given as a path, an http(s) URL (string or URL object) or a file: URL (string or object,
 * Node only) → a path or an http(s) URL string, the two forms the readers below take.
 */
export async function folderLocation(dirOrUrl: string | URL): Promise<string> {
  const href = dirOrUrl instanceof URL ? dirOrUrl.href : dirOrUrl;
  if (typeof href !== "string" || href === "") {
    throw new AutoencoderKLError(
      "fromPretrained",
      `expected a folder path or URL, got ${href === "" ? "an empty string" : typeof dirOrUrl}`,
    );
  }
  if (!/^file:/i.test(href)) {
    if (dirOrUrl instanceof URL && !isUrl(href))
      throw new AutoencoderKLError(href, `unsupported URL scheme ${dirOrUrl.protocol} (use http:, https: or file:)`);
    return href;
  }
  if (!isNode()) throw new AutoencoderKLError(href, "file: URLs need Node; in a browser pass an http(s) URL");
  const spec = "node:url";
  const { fileURLToPath } = (await import(/* @vite-ignore */ spec)) as typeof import("node:url");
  try {
    return fileURLToPath(href);
  } catch (e) {
    throw new AutoencoderKLError(href, `not a usable file: URL: ${(e as Error).message}`, { cause: e });
  }
}

/** Joins a folder (path or URL) with a relative file name. */
function join(base: string, ...parts: string[]): string {
  const rel = parts.filter(Boolean).join("/");
  if (isUrl(base)) return new URL(rel, base.endsWith("/") ? base : base + "/").href;
  return base.replace(/[\\/]+$/, "") + "/" + rel;
}

/** Reads a local file (Node) or a URL; returns null when it does not exist. */
async function readOptional(location: string): Promise<Uint8Array | null> {
  if (isUrl(location) || !isNode()) {
    const res = await fetch(location); // in a browser a relative path is a URL against the page
    if (res.status === 404) return null;
    if (!res.ok) throw new AutoencoderKLError(location, `HTTP ${res.status} ${res.statusText}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  const spec = "node:fs/promises";
  const fs = (await import(/* @vite-ignore */ spec)) as typeof import("node:fs/promises");
  try {
    const buf = await fs.readFile(location);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new AutoencoderKLError(location, `cannot read: ${(e as Error).message}`, { cause: e });
  }
}

/** "No such file" from a local open or a 404 from a server: the caller then looks for another format. */
function isNotFound(e: unknown): boolean {
  if (!(e instanceof AutoencoderKLError)) return false;
  return (e.cause as { code?: string } | undefined)?.code === "ENOENT" || /^HTTP 404\b/.test(e.rule);
}

/** Drops the half that `components` leaves out, for formats read whole. */
function dropSkipped(tensors: Map<string, Tensor>, components: Components): Map<string, Tensor> {
  for (const key of [...tensors.keys()]) if (isSkippedKey(key, components)) tensors.delete(key);
  return tensors;
}

/**
 * A safetensors file as a stream by ranges: the header now (every kept tensor's dtype and size checked),
 * then, when the model reads, only the tensors it asks for, one coalesced range at a time; the half that
 * `components` leaves out is never requested. A server that ignores Range gets one whole read instead.
 * Null when the file does not exist.
 */
async function openSafetensors(location: string, components: Components): Promise<TensorStream | null> {
  let ra: Awaited<ReturnType<typeof openRandomAccess>>;
  try {
    ra = await openRandomAccess(location);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  const skip = (name: string) => isSkippedKey(name, components);
  if (!ra) {
    // no ranges: one whole read, then the same stream over views of those bytes (no whole f32 state dict)
    const bytes = await readOptional(location);
    if (!bytes) return null;
    ra = { name: location, size: bytes.length, read: async (s, e) => bytes.subarray(s, e), close: async () => {} };
  }
  const close = closeOnce(ra);
  try {
    const ranged = await readSafetensorsHeaderRanged(ra);
    const entries = ranged.header.entries;
    const kept = entries.filter((e) => !skip(e.name));
    for (const e of kept) checkSafetensorsEntry(e, location);
    const excluded = entries.filter((e) => skip(e.name));
    const source = ra;
    return {
      shapes: new Map(kept.map((e) => [e.name, e.shape])),
      async read(keys, take) {
        try {
          const wanted = kept.filter((e) => keys.has(e.name));
          await streamSafetensorsEntriesRanged(source, ranged, wanted, { exclude: excluded }, (e, t) =>
            take(e.name, t),
          );
        } finally {
          await close();
        }
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Finds and reads a diffusers model folder: config.json and the weights the options select. */
export async function readPretrained(
  dirOrUrl: string | URL,
  options: PretrainedOptions = {},
): Promise<PretrainedFiles> {
  const { config, weights, source } = await openPretrained(dirOrUrl, options);
  return { config, stateDict: await collectTensorStream(weights), source };
}

/**
 * Finds a diffusers model folder and opens its weights as a stream (safetensors by ranges where the
 * source allows: local files, servers answering Range); close the stream when not reading it.
 */
export async function openPretrained(
  dirOrUrl: string | URL,
  options: PretrainedOptions = {},
): Promise<PretrainedStream> {
  const base = join(await folderLocation(dirOrUrl), options.subfolder ?? "");
  const configPath = join(base, "config.json");
  const configBytes = await readOptional(configPath);
  if (!configBytes) throw new AutoencoderKLError(configPath, "not found: a diffusers model folder needs config.json");
  let config: unknown;
  try {
    config = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(configBytes));
  } catch (e) {
    throw new AutoencoderKLError(configPath, `is not valid UTF-8 JSON: ${(e as Error).message}`, { cause: e });
  }
  if (
    options.variant !== undefined &&
    (typeof options.variant !== "string" || !/^[A-Za-z0-9_-]+$/.test(options.variant))
  ) {
    throw new AutoencoderKLError(
      "options.variant",
      `must be a name like "fp16" or "bf16", got ${JSON.stringify(options.variant)}`,
    );
  }
  const suffix = options.variant ? `.${options.variant}` : "";
  const safetensorsPath = join(base, `diffusion_pytorch_model${suffix}.safetensors`);
  const flaxPath = join(base, `diffusion_flax_model${suffix}.msgpack`);
  const components = options.components ?? "both";
  if (!options.fromFlax) {
    const weights = await openSafetensors(safetensorsPath, components);
    if (weights) return { config, weights, source: { config: configPath, weights: safetensorsPath } };
  }
  const flax = await readOptional(flaxPath);
  if (flax) {
    const { readFlaxStateDict } = await import("./flax.js");
    // msgpack has no index to read by ranges: the whole file is parsed, then the unused half dropped.
    return {
      config,
      weights: tensorStreamOf(dropSkipped(readFlaxStateDict(flax, flaxPath), components)),
      source: { config: configPath, weights: flaxPath },
    };
  }
  const looked = options.fromFlax ? flaxPath : `${safetensorsPath} or ${flaxPath}`;
  throw new AutoencoderKLError(base, `no weights found: looked for ${looked}`);
}
