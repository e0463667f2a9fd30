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

export function openZip(bytes: Uint8Array, source = "zip"): ZipArchive {
  const fail = (rule: string): never => {
    throw new AutoencoderKLError(source, `not a valid zip archive: ${rule}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  const u16 = (p: number) => (p + 2 <= n ? dv.getUint16(p, true) : fail(`truncated at byte ${p}`));
  const u32 = (p: number) => (p + 4 <= n ? dv.getUint32(p, true) : fail(`truncated at byte ${p}`));
  const u64 = (p: number): number => {
    const lo = u32(p);
    const hi = u32(p + 4);
    if (hi >= 0x200000) fail(`64-bit value at byte ${p} is too large`);
    return hi * 2 ** 32 + lo;
  };

  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  let eocd = -1;
  for (let p = n - 22; p >= Math.max(0, n - 22 - 0xffff); p--) {
    if (bytes[p] === 0x50 && bytes[p + 1] === 0x4b && dv.getUint32(p, true) === SIG_EOCD) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) fail("no end-of-central-directory record");
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff || (eocd >= 20 && u32(eocd - 20) === SIG_ZIP64_LOCATOR)) {
    if (eocd < 20 || u32(eocd - 20) !== SIG_ZIP64_LOCATOR) fail("zip64 fields without a zip64 locator");
    const rec = u64(eocd - 20 + 8);
    if (rec + 56 > n || u32(rec) !== SIG_ZIP64_EOCD) fail("bad zip64 end-of-central-directory record");
    count = u64(rec + 32);
    cdSize = u64(rec + 40);
    cdOffset = u64(rec + 48);
  }
  if (count > MAX_ENTRIES) fail(`${count} entries`);
  if (cdOffset + cdSize > n) fail("central directory runs past the end of the file");

  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (u32(p) !== SIG_CENTRAL) fail(`bad central directory entry ${i}`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    let compressedSize = u32(p + 20);
    let size = u32(p + 24);
    const nameLength = u16(p + 28);
    const extraLength = u16(p + 30);
    const commentLength = u16(p + 32);
    let localOffset = u32(p + 42);
    const nameStart = p + 46;
    if (nameStart + nameLength + extraLength + commentLength > n) fail(`central directory entry ${i} runs past the end`);
    const name = decoder.decode(bytes.subarray(nameStart, nameStart + nameLength));
    // zip64 extended information: the 64-bit values, in order, for the fields saturated above.
    let e = nameStart + nameLength;
    const extraEnd = e + extraLength;
    while (e + 4 <= extraEnd) {
      const id = u16(e);
      const len = u16(e + 2);
      let q = e + 4;
      if (q + len > extraEnd) fail(`bad extra field in ${JSON.stringify(name)}`);
      if (id === 0x0001) {
        if (size === 0xffffffff && q + 8 <= e + 4 + len) (size = u64(q)), (q += 8);
        if (compressedSize === 0xffffffff && q + 8 <= e + 4 + len) (compressedSize = u64(q)), (q += 8);
        if (localOffset === 0xffffffff && q + 8 <= e + 4 + len) (localOffset = u64(q)), (q += 8);
      }
      e += 4 + len;
    }
    if (flags & 1) fail(`entry ${JSON.stringify(name)} is encrypted`);
    if (localOffset + 30 > n || u32(localOffset) !== SIG_LOCAL) fail(`entry ${JSON.stringify(name)} has no local header`);
    const dataStart = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28);
    if (dataStart + compressedSize > n) fail(`entry ${JSON.stringify(name)} runs past the end of the file`);
    if (method === 0 && compressedSize !== size) fail(`stored entry ${JSON.stringify(name)} has mismatched sizes`);
    if (entries.has(name)) fail(`duplicate entry ${JSON.stringify(name)}`);
    entries.set(name, { name, method, compressedSize, size, dataStart });
    p = nameStart + nameLength + extraLength + commentLength;
  }
  return { source, bytes, entries };
}

/** A stored entry's bytes as a view into the archive (no copy). Compressed entries need entryBytes. */
export function storedEntryBytes(zip: ZipArchive, entry: ZipEntry): Uint8Array {
  if (entry.method !== 0) {
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} is compressed (method ${entry.method}); read it with the async loader`);
  }
  return zip.bytes.subarray(entry.dataStart, entry.dataStart + entry.size);
}

/** An entry's bytes: stored ones as a view, deflated ones inflated via DecompressionStream. */
export async function entryBytes(zip: ZipArchive, entry: ZipEntry): Promise<Uint8Array> {
  if (entry.method === 0) return storedEntryBytes(zip, entry);
  if (entry.method !== 8) {
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} uses unsupported compression method ${entry.method}`);
  }
  if (typeof DecompressionStream !== "function") {
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} is deflated and this runtime has no DecompressionStream`);
  }
  // Deflate expands at most ~1032:1, so a larger declared size is a lie we must not allocate for.
  if (entry.size > entry.compressedSize * 1032 + 1024) {
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} declares ${entry.size} bytes, more than ${entry.compressedSize} deflated bytes can hold`);
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
        throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} inflates past its declared ${entry.size} bytes`);
      }
      out.set(value, pos);
      pos += value.length;
    }
  } catch (cause) {
    reader.cancel().catch(() => {});
    if (cause instanceof AutoencoderKLError) throw cause;
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} is not valid deflate data`, { cause });
  }
  if (pos !== entry.size) {
    throw new AutoencoderKLError(zip.source, `zip entry ${JSON.stringify(entry.name)} inflates to ${pos} bytes, not the declared ${entry.size}`);
  }
  return out;
}
