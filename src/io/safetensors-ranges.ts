/**
 * Safetensors by byte ranges: the header, then only the tensors a caller picks. Single files use it to
 * skip the UNet and text encoders, folders and single files to skip the half of the VAE left out by
 * `components`; files past the 4 GiB typed-array limit load too.
 */
import type { Tensor } from "../tensor/tensor.js";
import {
  parseSafetensorsHeader,
  readSafetensorsTensor,
  type SafetensorsEntry,
  type SafetensorsHeader,
  safetensorsHeaderLength,
} from "./safetensors.js";
import type { RandomAccessSource } from "./source.js";

/** Coalesced reads: neighbours closer than this share one request; no single read grows past the cap. */
const MERGE_GAP = 1 << 20;
/**
 * Largest coalesced read. Tensors are handed on as their range arrives, so the range is the load's whole host
 * transient, and allocators keep freed blocks of that size resident afterwards (measured: 64-MiB ranges left
 * ~33 MiB more RSS after loading an SD decoder than 16-MiB ones).
 */
const MAX_READ = 16 << 20;

export interface RangedHeader {
  header: SafetensorsHeader;
  /** Bytes read so far: the 8-byte length and the JSON header. */
  headerBytes: number;
}

/** Reads and validates the header (two small reads: its length, then the JSON). */
export async function readSafetensorsHeaderRanged(ra: RandomAccessSource, first8?: Uint8Array): Promise<RangedHeader> {
  first8 ??= await ra.read(0, Math.min(8, ra.size));
  const headerLength = safetensorsHeaderLength(first8, ra.size, ra.name);
  const header = parseSafetensorsHeader(await ra.read(0, 8 + headerLength), ra.size, ra.name);
  return { header, headerBytes: 8 + headerLength };
}

export interface RangedReadOptions {
  onProgress?: (loaded: number, total?: number) => void;
  signal?: AbortSignal;
  /** Entries whose bytes must never be read, not even inside a coalesced range (the half left out). */
  exclude?: readonly SafetensorsEntry[];
}

/**
 * Reads the given entries (any order) in coalesced ranges. A gap is read over only when it is under
 * MERGE_GAP and holds no byte of an `exclude` entry. Returns tensors by file name, in file order.
 */
export async function readSafetensorsEntriesRanged(
  ra: RandomAccessSource,
  ranged: RangedHeader,
  entries: readonly SafetensorsEntry[],
  options: RangedReadOptions = {},
  convert: (entry: SafetensorsEntry, tensor: Tensor) => Tensor = (_, t) => t,
): Promise<Map<string, Tensor>> {
  const byName = new Map<string, Tensor>();
  await streamSafetensorsEntriesRanged(ra, ranged, entries, options, (e, t) => byName.set(e.name, convert(e, t)));
  // In the file's order, as a whole-file read gives them.
  const out = new Map<string, Tensor>();
  for (const e of ranged.header.entries) {
    const t = byName.get(e.name);
    if (t) out.set(e.name, t);
  }
  return out;
}

/**
 * The same coalesced reads, handing each tensor to `take` as soon as its range has arrived (in file
 * order) and keeping nothing: at most one range (≤ MAX_READ bytes) and one tensor are on the host at once.
 */
export async function streamSafetensorsEntriesRanged(
  ra: RandomAccessSource,
  { headerBytes }: RangedHeader,
  entries: readonly SafetensorsEntry[],
  options: RangedReadOptions,
  take: (entry: SafetensorsEntry, tensor: Tensor) => void,
): Promise<void> {
  const wanted = [...entries].sort((a, b) => a.start - b.start);
  const exclude = options.exclude ?? [];
  const mayReadOver = (start: number, end: number) =>
    end - start <= MERGE_GAP && !exclude.some((x) => x.start < end && x.end > start && x.end > x.start);
  const total = headerBytes + wanted.reduce((n, e) => n + e.end - e.start, 0);
  let loaded = headerBytes;
  options.onProgress?.(loaded, total);
  for (let i = 0; i < wanted.length; ) {
    let j = i + 1;
    while (
      j < wanted.length &&
      mayReadOver(wanted[j - 1].end, wanted[j].start) &&
      wanted[j].end - wanted[i].start <= MAX_READ
    )
      j++;
    options.signal?.throwIfAborted();
    const base = wanted[i].start;
    const buf = await ra.read(base, wanted[j - 1].end);
    for (const e of wanted.slice(i, j)) {
      const local = { ...e, start: e.start - base, end: e.end - base };
      take(e, readSafetensorsTensor(buf, local, ra.name));
      loaded += e.end - e.start;
    }
    options.onProgress?.(loaded, total);
    i = j;
  }
}
