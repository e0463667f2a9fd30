/**
 * A read-only zip reader for torch.save archives: central directory (zip64 included), stored entries
 * as zero-copy views, deflated ones through DecompressionStream. Every offset and size is checked
 * against the buffer before use.
 */
import { AutoencoderKLError } from "../errors.js";

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  /** Absolute offset of the entry's data (after its local header). */
  dataStart: number;
}

export interface ZipArchive {
  source: string;
  bytes: Uint8Array;
  entries: Map<string, ZipEntry>;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** Too many entries for any checkpoint; also bounds the work a hostile directory can ask for. */
const MAX_ENTRIES = 1_000_000;

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/** A run of the file's bytes starting at absolute offset `at`; reads outside it fail. */
class Window {
  private readonly dv: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly at: number,
    private readonly fail: (rule: string) => never,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  has(p: number, n: number): boolean {
    return p >= this.at && p + n <= this.at + this.bytes.length;
  }
  private at0(p: number, n: number): number {
    if (!this.has(p, n)) this.fail(`truncated at byte ${p}`);
    return p - this.at;
  }
  u16(p: number): number {
    return this.dv.getUint16(this.at0(p, 2), true);
  }
  u32(p: number): number {
    return this.dv.getUint32(this.at0(p, 4), true);
  }
  u64(p: number): number {
    const lo = this.u32(p);
    const hi = this.u32(p + 4);
    if (hi >= 0x200000) this.fail(`64-bit value at byte ${p} is too large`);
    return hi * 2 ** 32 + lo;
  }
  slice(p: number, n: number): Uint8Array {
    const q = this.at0(p, n);
    return this.bytes.subarray(q, q + n);
  }
}

const failer =
  (source: string) =>
  (rule: string): never => {
    throw new AutoencoderKLError(source, `not a valid zip archive: ${rule}`);
  };

/** How many bytes at the end of a file hold the end records (EOCD + longest comment + zip64 locator and record). */
const TAIL = 22 + 0xffff + 20 + 56;

interface End {
  count: number;
  cdOffset: number;
  cdSize: number;
  /** Set when the zip64 record lies outside the tail window and must be read first. */
  zip64At?: number;
}

/** Find the end-of-central-directory record in `tail` (the last bytes of a `fileSize`-byte file). */
function findEnd(tail: Window, fileSize: number, fail: (rule: string) => never): End {
  let eocd = -1;
  const lowest = Math.max(tail.at, fileSize - 22 - 0xffff);
  for (let p = fileSize - 22; p >= lowest; p--) {
    if (tail.has(p, 4) && tail.u32(p) === SIG_EOCD) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) fail("no end-of-central-directory record");
  const end: End = { count: tail.u16(eocd + 10), cdSize: tail.u32(eocd + 12), cdOffset: tail.u32(eocd + 16) };
  const hasLocator = eocd - 20 >= 0 && tail.has(eocd - 20, 20) && tail.u32(eocd - 20) === SIG_ZIP64_LOCATOR;
  if (end.count === 0xffff || end.cdSize === 0xffffffff || end.cdOffset === 0xffffffff || hasLocator) {
    if (!hasLocator) fail("zip64 fields without a zip64 locator");
    const rec = tail.u64(eocd - 20 + 8);
    if (rec + 56 > eocd - 20) fail("bad zip64 end-of-central-directory record offset");
    if (!tail.has(rec, 56)) return { ...end, zip64At: rec };
    readZip64(tail, rec, end, fail);
  }
  return end;
}

function readZip64(w: Window, rec: number, end: End, fail: (rule: string) => never): void {
  if (w.u32(rec) !== SIG_ZIP64_EOCD) fail("bad zip64 end-of-central-directory record");
  end.count = w.u64(rec + 32);
  end.cdSize = w.u64(rec + 40);
  end.cdOffset = w.u64(rec + 48);
  end.zip64At = undefined;
}

/** A central directory entry; the data position needs the local header (see resolveLocal). */
export interface DirectoryEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function checkEnd(end: End, fileSize: number, fail: (rule: string) => never): void {
  if (end.count > MAX_ENTRIES) fail(`${end.count} entries`);
  if (end.cdOffset + end.cdSize > fileSize) fail("central directory runs past the end of the file");
  // Each entry takes at least 46 bytes: a count the directory can't hold is a lie.
  if (end.count * 46 > end.cdSize) fail(`${end.count} entries cannot fit in a ${end.cdSize}-byte central directory`);
}

function parseDirectory(cd: Window, end: End, fileSize: number, fail: (rule: string) => never): DirectoryEntry[] {
  const out: DirectoryEntry[] = [];
  const names = new Set<string>();
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let p = end.cdOffset;
  for (let i = 0; i < end.count; i++) {
    if (cd.u32(p) !== SIG_CENTRAL) fail(`bad central directory entry ${i}`);
    const flags = cd.u16(p + 8);
    const method = cd.u16(p + 10);
    let compressedSize = cd.u32(p + 20);
    let size = cd.u32(p + 24);
    const nameLength = cd.u16(p + 28);
    const extraLength = cd.u16(p + 30);
    const commentLength = cd.u16(p + 32);
    let localOffset = cd.u32(p + 42);
    const nameStart = p + 46;
    const name = decoder.decode(cd.slice(nameStart, nameLength));
    // zip64 extended information: the 64-bit values, in order, for the fields saturated above.
    let e = nameStart + nameLength;
    const extraEnd = e + extraLength;
    while (e + 4 <= extraEnd) {
      const id = cd.u16(e);
      const len = cd.u16(e + 2);
      let q = e + 4;
      if (q + len > extraEnd) fail(`bad extra field in ${JSON.stringify(name)}`);
      if (id === 0x0001) {
        if (size === 0xffffffff && q + 8 <= e + 4 + len) (size = cd.u64(q)), (q += 8);
        if (compressedSize === 0xffffffff && q + 8 <= e + 4 + len) (compressedSize = cd.u64(q)), (q += 8);
        if (localOffset === 0xffffffff && q + 8 <= e + 4 + len) (localOffset = cd.u64(q)), (q += 8);
      }
      e += 4 + len;
    }
    if (!cd.has(nameStart, nameLength + extraLength + commentLength))
      fail(`central directory entry ${i} runs past its end`);
    if (flags & 1) fail(`entry ${JSON.stringify(name)} is encrypted`);
    if (method === 0 && compressedSize !== size) fail(`stored entry ${JSON.stringify(name)} has mismatched sizes`);
    if (localOffset + 30 + compressedSize > fileSize)
      fail(`entry ${JSON.stringify(name)} runs past the end of the file`);
    if (names.has(name)) fail(`duplicate entry ${JSON.stringify(name)}`);
    names.add(name);
    out.push({ name, method, compressedSize, size, localOffset });
    p = nameStart + nameLength + extraLength + commentLength;
  }
  return out;
}

/** The entry's data start, from its local header (whose extra field may differ from the directory's). */
function resolveLocal(w: Window, d: DirectoryEntry, fileSize: number, fail: (rule: string) => never): ZipEntry {
  if (w.u32(d.localOffset) !== SIG_LOCAL) fail(`entry ${JSON.stringify(d.name)} has no local header`);
  const dataStart = d.localOffset + 30 + w.u16(d.localOffset + 26) + w.u16(d.localOffset + 28);
  if (dataStart + d.compressedSize > fileSize) fail(`entry ${JSON.stringify(d.name)} runs past the end of the file`);
  return { name: d.name, method: d.method, compressedSize: d.compressedSize, size: d.size, dataStart };
}

export function openZip(bytes: Uint8Array, source = "zip"): ZipArchive {
  const fail = failer(source);
  const all = new Window(bytes, 0, fail);
  const end = findEnd(all, bytes.length, fail);
  if (end.zip64At !== undefined) fail("bad zip64 end-of-central-directory record offset");
  checkEnd(end, bytes.length, fail);
  const entries = new Map<string, ZipEntry>();
  for (const d of parseDirectory(all, end, bytes.length, fail))
    entries.set(d.name, resolveLocal(all, d, bytes.length, fail));
  return { source, bytes, entries };
}

/** What ranged zip reading needs from a source. */
export interface RangeReader {
  readonly size: number;
  read(start: number, end: number): Promise<Uint8Array>;
}

/** The central directory of a zip read by ranges: the tail, maybe the zip64 record, then the directory. */
export async function readZipDirectory(ra: RangeReader, source = "zip"): Promise<Map<string, DirectoryEntry>> {
  const fail = failer(source);
  const tailStart = Math.max(0, ra.size - TAIL);
  const tail = new Window(await ra.read(tailStart, ra.size), tailStart, fail);
  const end = findEnd(tail, ra.size, fail);
  if (end.zip64At !== undefined)
    readZip64(new Window(await ra.read(end.zip64At, end.zip64At + 56), end.zip64At, fail), end.zip64At, end, fail);
  checkEnd(end, ra.size, fail);
  const cd = tail.has(end.cdOffset, end.cdSize)
    ? tail
    : new Window(await ra.read(end.cdOffset, end.cdOffset + end.cdSize), end.cdOffset, fail);
  return new Map(parseDirectory(cd, end, ra.size, fail).map((d) => [d.name, d]));
}

/** Local headers are 30 bytes plus name and extra (torch pads the extra to 64-byte alignment); longer ones cost a second read. */
const LOCAL_SLACK = 30 + 1024;
/** Neighbouring entries closer than this share one request. */
const MERGE_GAP = 256 << 10;

/**
 * Read several entries by ranges, neighbours coalesced into one request (up to `maxRead` bytes),
 * deflated ones inflated. Returns each entry's data.
 */
export async function readZipEntries(
  ra: RangeReader,
  wanted: DirectoryEntry[],
  source = "zip",
  onRead?: (bytes: number) => void,
  maxRead = 64 << 20,
): Promise<Map<string, Uint8Array>> {
  const fail = failer(source);
  const sorted = [...wanted].sort((a, b) => a.localOffset - b.localOffset);
  const out = new Map<string, Uint8Array>();
  // Each entry's span: local header (name + extra unknown until read, bounded) and data.
  const span = (d: DirectoryEntry): [number, number] => [
    d.localOffset,
    Math.min(ra.size, d.localOffset + LOCAL_SLACK + d.compressedSize),
  ];
  for (let i = 0; i < sorted.length; ) {
    const [start] = span(sorted[i]);
    let stop = span(sorted[i])[1];
    let j = i + 1;
    while (j < sorted.length && sorted[j].localOffset <= stop + MERGE_GAP && span(sorted[j])[1] - start <= maxRead) {
      stop = Math.max(stop, span(sorted[j])[1]);
      j++;
    }
    const w = new Window(await ra.read(start, stop), start, fail);
    for (const d of sorted.slice(i, j)) {
      const e = resolveLocal(w, d, ra.size, fail);
      let zip: ZipArchive = { source, bytes: w.bytes, entries: new Map() };
      let local = { ...e, dataStart: e.dataStart - start };
      if (!w.has(e.dataStart, e.compressedSize)) {
        // A local extra field longer than the slack: fetch the data exactly.
        zip = { source, bytes: await ra.read(e.dataStart, e.dataStart + e.compressedSize), entries: new Map() };
        local = { ...e, dataStart: 0 };
      }
      out.set(d.name, await entryBytes(zip, local));
      onRead?.(d.compressedSize);
    }
    i = j;
  }
  return out;
}

/** A stored entry's bytes as a view into the archive (no copy). Compressed entries need entryBytes. */
export function storedEntryBytes(zip: ZipArchive, entry: ZipEntry): Uint8Array {
  if (entry.method !== 0) {
    throw new AutoencoderKLError(
      zip.source,
      `zip entry ${JSON.stringify(entry.name)} is compressed (method ${entry.method}); read it with the async loader`,
    );
  }
  return zip.bytes.subarray(entry.dataStart, entry.dataStart + entry.size);
}

/** An entry's bytes: stored ones as a view, deflated ones inflated via DecompressionStream. */
export async function entryBytes(zip: ZipArchive, entry: ZipEntry): Promise<Uint8Array> {
  if (entry.method === 0) return storedEntryBytes(zip, entry);
  if (entry.method !== 8) {
    throw new AutoencoderKLError(
      zip.source,
      `zip entry ${JSON.stringify(entry.name)} uses unsupported compression method ${entry.method}`,
    );
  }
  if (typeof DecompressionStream !== "function") {
    throw new AutoencoderKLError(
      zip.source,
      `zip entry ${JSON.stringify(entry.name)} is deflated and this runtime has no DecompressionStream`,
    );
  }
  // Deflate expands at most ~1032:1, so a larger declared size is a lie we must not allocate for.
  if (entry.size > entry.compressedSize * 1032 + 1024) {
    throw new AutoencoderKLError(
      zip.source,
      `zip entry ${JSON.stringify(entry.name)} declares ${entry.size} bytes, more than ${entry.compressedSize} deflated bytes can hold`,
    );
  }
  const compressed = zip.bytes.subarray(entry.dataStart, entry.dataStart + entry.compressedSize);
  const inflate = new DecompressionStream("deflate-raw");
  const writer = inflate.writable.getWriter();
  // Not awaited: the writes complete only as the reader below drains the output.
  writer.write(compressed as Uint8Array<ArrayBuffer>).catch(() => {});
  writer.close().catch(() => {});
  const stream = inflate.readable;
  // The directory's size bounds the output: never grow past what it announced.
  const out = new Uint8Array(entry.size);
  let pos = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (pos + value.length > entry.size) {
        throw new AutoencoderKLError(
          zip.source,
          `zip entry ${JSON.stringify(entry.name)} inflates past its declared ${entry.size} bytes`,
        );
      }
      out.set(value, pos);
      pos += value.length;
    }
  } catch (cause) {
    reader.cancel().catch(() => {});
    if (cause instanceof AutoencoderKLError) throw cause;
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} is not valid deflate data`, {
      cause,
    });
  }
  if (pos !== entry.size) {
    throw new AutoencoderKLError(
      zip.source,
      `zip entry ${JSON.stringify(entry.name)} inflates to ${pos} bytes, not the declared ${entry.size}`,
    );
  }
  return out;
}
