/**
 * Bytes from wherever the user has them: a local path (Node), an http(s) URL, a Blob/File, or bytes.
 * Large files are read into one buffer allocated up front when the size is known, so a model never
 * sits in memory twice.
 */
import { AutoencoderKLError } from "../errors.js";
import { isNode } from "../platform.js";

export type ByteSource = string | URL | Uint8Array | ArrayBuffer | Blob;

export interface ReadSourceOptions {
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
}

/** A specifier in a variable so browser bundlers don't try to resolve Node's file system. */
const FS_MODULE = "node:fs/promises";

const CHUNK = 16 * 1024 * 1024;

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
/** "file:///…" strings are URLs, not relative paths named "file:". */
function asFileUrl(source: ByteSource): ByteSource {
  return typeof source === "string" && /^file:/i.test(source) ? new URL(source) : source;
}

export async function readSource(source: ByteSource, options: ReadSourceOptions = {}): Promise<Uint8Array> {
  source = asFileUrl(source);
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
    if (source.protocol === "file:")
      throw new AutoencoderKLError(source.href, "file: URLs need Node; pass a Blob or bytes in a browser");
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
    throw new AutoencoderKLError(name, code === "ENOENT" ? "no such file" : `cannot open (${code ?? String(cause)})`, {
      cause,
    });
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
    throw new AutoencoderKLError(
      name,
      `read failed after ${loaded} bytes: ${(error as Error)?.message ?? String(error)}`,
      { cause: error },
    );
  } finally {
    reader.releaseLock();
  }
}

/** Byte ranges of a source without reading all of it: how single files skip the UNet and text encoders. */
export interface RandomAccessSource {
  readonly name: string;
  readonly size: number;
  /** Bytes [start, end) as a fresh buffer (or a view of in-memory input). */
  read(start: number, end: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

function checkRange(name: string, size: number, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > size) {
    throw new AutoencoderKLError(name, `byte range [${start}, ${end}) is outside the ${size}-byte file`);
  }
}

/**
 * Open a source for ranged reads: bytes, Blobs, local files (Node) and http(s) servers that answer
 * Range requests with 206. Returns undefined when ranges are not available (read it whole instead).
 */
export async function openRandomAccess(
  source: ByteSource,
  options: { signal?: AbortSignal } = {},
): Promise<RandomAccessSource | undefined> {
  const name = describeSource(source);
  source = asFileUrl(source);
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
    return {
      name,
      size: bytes.length,
      read: async (s, e) => (checkRange(name, bytes.length, s, e), bytes.subarray(s, e)),
      close: async () => {},
    };
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    const blob = source;
    return {
      name,
      size: blob.size,
      read: async (s, e) => (checkRange(name, blob.size, s, e), new Uint8Array(await blob.slice(s, e).arrayBuffer())),
      close: async () => {},
    };
  }
  let url: string | undefined;
  let path: string | URL | undefined;
  if (source instanceof URL) {
    if (source.protocol === "http:" || source.protocol === "https:") url = source.href;
    else if (source.protocol === "file:" && isNode()) path = source;
    else return undefined;
  } else if (typeof source === "string") {
    if (isHttp(source) || !isNode()) url = source;
    else path = source;
  } else {
    return undefined;
  }
  if (path !== undefined) return openFileRange(path, name);
  return openHttpRange(url!, name, options.signal);
}

async function openFileRange(path: string | URL, name: string): Promise<RandomAccessSource> {
  const fs = (await import(/* @vite-ignore */ FS_MODULE)) as typeof import("node:fs/promises");
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    handle = await fs.open(path, "r");
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new AutoencoderKLError(name, code === "ENOENT" ? "no such file" : `cannot open (${code ?? String(cause)})`, {
      cause,
    });
  }
  let size: number;
  try {
    size = (await handle.stat()).size;
  } catch (cause) {
    await handle.close();
    throw new AutoencoderKLError(name, "cannot stat the file", { cause });
  }
  return {
    name,
    size,
    async read(start, end) {
      checkRange(name, size, start, end);
      const out = allocate(end - start, name);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, Math.min(CHUNK, out.length - done), start + done);
        if (bytesRead === 0)
          throw new AutoencoderKLError(name, `file shrank while reading (at byte ${start + done} of ${size})`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

async function openHttpRange(url: string, name: string, signal?: AbortSignal): Promise<RandomAccessSource | undefined> {
  if (typeof fetch !== "function") return undefined;
  // A first 8-byte range tells whether the server does ranges (206) and how big the file is.
  let response: Response;
  try {
    response = await fetch(url, { headers: { range: "bytes=0-7" }, signal });
  } catch (cause) {
    if (signal?.aborted) throw cause;
    throw new AutoencoderKLError(url, `request failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
  const total = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1];
  const encoding = response.headers.get("content-encoding");
  if (response.status !== 206 || total === undefined || (encoding && encoding !== "identity")) {
    await response.body?.cancel().catch(() => {});
    if (!response.ok && response.status !== 206)
      throw new AutoencoderKLError(url, `HTTP ${response.status} ${response.statusText}`.trim());
    return undefined;
  }
  await response.body?.cancel().catch(() => {});
  const size = Number(total);
  const target = response.url || url; // follow a redirect once (hubs redirect to a CDN)
  return {
    name,
    size,
    async read(start, end) {
      checkRange(name, size, start, end);
      if (start === end) return new Uint8Array(0);
      const r = await fetch(target, { headers: { range: `bytes=${start}-${end - 1}` }, signal });
      if (r.status !== 206 || !r.body) {
        await r.body?.cancel().catch(() => {});
        throw new AutoencoderKLError(url, `range request for bytes ${start}-${end - 1} answered HTTP ${r.status}`);
      }
      return readStream(r.body, end - start, url, { signal });
    },
    close: async () => {},
  };
}
