/**
 * Bytes from wherever the user has them: a local path (Node), an http(s) URL, a Blob/File, or bytes.
 * Large files are read into one buffer allocated up front when the size is known, so a model never
 * sits in memory twice.
 */
import { AutoencoderKLError } from "../errors.js";

export type ByteSource = string | URL | Uint8Array | ArrayBuffer | Blob;

export interface ReadSourceOptions {
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
}

/** A specifier in a variable so browser bundlers don't try to resolve Node's file system. */
const FS_MODULE = "node:fs/promises";

const CHUNK = 16 * 1024 * 1024;

export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}

/** How errors name a source. */
export function describeSource(source: ByteSource): string {
  if (typeof source === "string") return source;
  if (source instanceof URL) return source.href;
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    const name = (source as Blob & { name?: unknown }).name;
    return typeof name === "string" && name ? name : "blob";
  }
  return "bytes";
}

function isHttp(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

function allocate(size: number, what: string): Uint8Array {
  try {
    return new Uint8Array(size);
  } catch (cause) {
    throw new AutoencoderKLError(what, `cannot allocate ${size} bytes to read it`, { cause });
  }
}

/** Read a whole source as bytes. Uint8Array input is returned as is (no copy). */
export async function readSource(source: ByteSource, options: ReadSourceOptions = {}): Promise<Uint8Array> {
  if (source instanceof Uint8Array) {
    options.onProgress?.(source.length, source.length);
    return source;
  }
  if (source instanceof ArrayBuffer) {
    options.onProgress?.(source.byteLength, source.byteLength);
    return new Uint8Array(source);
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) return readBlob(source, options);
  if (source instanceof URL) {
    if (source.protocol === "http:" || source.protocol === "https:") return readUrl(source.href, options);
    if (source.protocol === "file:" && isNode()) return readFile(source, source.href, options);
    if (source.protocol === "file:") throw new AutoencoderKLError(source.href, "file: URLs need Node; pass a Blob or bytes in a browser");
    return readUrl(source.href, options);
  }
  if (typeof source === "string") {
    if (isHttp(source)) return readUrl(source, options);
    if (isNode()) return readFile(source, source, options);
    return readUrl(source, options); // a browser resolves relative paths against the page
  }
  throw new AutoencoderKLError("source", "expected a path, URL, Uint8Array, ArrayBuffer or Blob");
}

async function readFile(path: string | URL, name: string, options: ReadSourceOptions): Promise<Uint8Array> {
  const fs = (await import(/* @vite-ignore */ FS_MODULE)) as typeof import("node:fs/promises");
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    handle = await fs.open(path, "r");
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new AutoencoderKLError(name, code === "ENOENT" ? "no such file" : `cannot open (${code ?? String(cause)})`, { cause });
  }
  try {
    const { size } = await handle.stat();
    const out = allocate(size, name);
    let loaded = 0;
    while (loaded < size) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await handle.read(out, loaded, Math.min(CHUNK, size - loaded), loaded);
      if (bytesRead === 0) throw new AutoencoderKLError(name, `file shrank while reading (${loaded} of ${size} bytes)`);
      loaded += bytesRead;
      options.onProgress?.(loaded, size);
    }
    if (size === 0) options.onProgress?.(0, 0);
    return out;
  } finally {
    await handle.close();
  }
}

async function readBlob(blob: Blob, options: ReadSourceOptions): Promise<Uint8Array> {
  const name = describeSource(blob);
  if (!options.onProgress || typeof blob.stream !== "function") {
    const out = new Uint8Array(await blob.arrayBuffer());
    options.onProgress?.(out.length, out.length);
    return out;
  }
  return readStream(blob.stream(), blob.size, name, options);
}

async function readUrl(url: string, options: ReadSourceOptions): Promise<Uint8Array> {
  if (typeof fetch !== "function") throw new AutoencoderKLError(url, "fetch is not available in this runtime");
  let response: Response;
  try {
    response = await fetch(url, { signal: options.signal });
  } catch (cause) {
    if (options.signal?.aborted) throw cause;
    throw new AutoencoderKLError(url, `request failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
  if (!response.ok) throw new AutoencoderKLError(url, `HTTP ${response.status} ${response.statusText}`.trim());
  // With a content encoding the header counts compressed bytes, not what the body stream yields.
  const encoding = response.headers.get("content-encoding");
  const lengthHeader = response.headers.get("content-length");
  const declared = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const total = !encoding || encoding === "identity" ? declared : undefined;
  if (!response.body) {
    const out = new Uint8Array(await response.arrayBuffer());
    options.onProgress?.(out.length, out.length);
    return out;
  }
  return readStream(response.body, total, url, options);
}

/** Stream into one preallocated buffer when `total` is known, else gather chunks and join once. */
async function readStream(
  stream: ReadableStream<Uint8Array>,
  total: number | undefined,
  name: string,
  options: ReadSourceOptions,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  let loaded = 0;
  try {
    if (total !== undefined && Number.isSafeInteger(total)) {
      const out = allocate(total, name);
      for (;;) {
        options.signal?.throwIfAborted();
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.length > total) {
          throw new AutoencoderKLError(name, `received more than the ${total} bytes announced`);
        }
        out.set(value, loaded);
        loaded += value.length;
        options.onProgress?.(loaded, total);
      }
      if (loaded !== total) throw new AutoencoderKLError(name, `truncated: received ${loaded} of ${total} bytes`);
      return out;
    }
    const chunks: Uint8Array[] = [];
    for (;;) {
      options.signal?.throwIfAborted();
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      options.onProgress?.(loaded, undefined);
    }
    if (chunks.length === 1) return chunks[0];
    const out = allocate(loaded, name);
    let pos = 0;
    // Release each chunk as it is copied so the peak stays near one copy plus one chunk.
    for (let i = 0; i < chunks.length; i++) {
      out.set(chunks[i], pos);
      pos += chunks[i].length;
      chunks[i] = new Uint8Array(0);
    }
    return out;
  } catch (error) {
    reader.cancel(error).catch(() => {}); // stop the download; the error that matters is ours
    if (error instanceof AutoencoderKLError || options.signal?.aborted) throw error;
    throw new AutoencoderKLError(name, `read failed after ${loaded} bytes: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  } finally {
    reader.releaseLock();
  }
}
