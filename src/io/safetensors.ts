/**
 * safetensors read/write. Reading is hardened: every rule the reference implementation enforces
 * (huggingface/safetensors) is checked before any allocation sized by the file, plus rules JSON.parse
 * would let slip (duplicate keys). Every rejection is an AutoencoderKLError naming file, tensor and rule.
 */
import { AutoencoderKLError } from "../errors.js";
import {
  FLOAT_DTYPE_SIZE,
  type FloatDtype,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
  floatBytesToF32,
  HOST_IS_LITTLE_ENDIAN,
} from "../tensor/dtype.js";
import { MAX_TENSOR_ELEMENTS, shapeSize, Tensor } from "../tensor/tensor.js";
import { type Json, JsonNumber, parseStrictJson, quoteName as q } from "./json.js";

/** The reference implementation refuses headers above this (100 MB). */
export const MAX_HEADER_LENGTH = 100_000_000;

/** Bits per element of every dtype the format defines (sub-byte float types included). */
const DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ["BOOL", 8],
  ["F4", 4],
  ["F6_E2M3", 6],
  ["F6_E3M2", 6],
  ["U8", 8],
  ["I8", 8],
  ["F8_E5M2", 8],
  ["F8_E4M3", 8],
  ["F8_E8M0", 8],
  ["I16", 16],
  ["U16", 16],
  ["F16", 16],
  ["BF16", 16],
  ["I32", 32],
  ["U32", 32],
  ["F32", 32],
  ["F64", 64],
  ["I64", 64],
  ["U64", 64],
  ["C64", 64],
]);

const CONVERTIBLE = new Set<string>(Object.keys(FLOAT_DTYPE_SIZE));

/** One tensor as the header describes it. `start`/`end` are absolute byte positions in the file. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** data_offsets as written: relative to the start of the data section. */
  dataOffsets: [number, number];
  start: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N, the JSON header's byte length. */
  headerLength: number;
  /** Absolute file position of the data section (8 + N). */
  dataStart: number;
  metadata: Record<string, string>;
  /** Entries in header order. */
  entries: SafetensorsEntry[];
}

export interface ReadSafetensorsOptions {
  /** Return true for the tensors to convert; the others are validated but never converted. */
  filter?: (name: string, entry: SafetensorsEntry) => boolean;
}

// ---------------------------------------------------------------------------------------------

/** A non-negative integer written as plain digits that fits exactly in a double. */
function asIndex(v: Json): number | undefined {
  if (!(v instanceof JsonNumber)) return undefined;
  if (!/^(0|[1-9][0-9]*)$/.test(v.raw)) return undefined;
  return Number.isSafeInteger(v.value) ? v.value : undefined;
}

function describe(v: Json): string {
  if (v instanceof JsonNumber) return v.raw.length > 40 ? `${v.raw.slice(0, 40)}…` : v.raw;
  if (v instanceof Map) return "an object";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `the string ${q(v)}`;
  return String(v);
}

/**
 * The header length N from a file's first 8 bytes, validated against the 100 MB cap and the file
 * size. Lets a ranged reader fetch exactly the header before anything else.
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileLength: number, source = "safetensors"): number {
  // Only a file that fails these rules is sniffed: a valid header length may start like anything.
  const fail = (rule: string): never => {
    const other = sniffOtherFormat(first8);
    throw new AutoencoderKLError(source, other ? `not a safetensors file: it is ${other}` : rule);
  };
  if (fileLength < 8 || first8.length < 8) {
    return fail(`file is ${fileLength} bytes, shorter than the 8-byte header length: not a safetensors file`);
  }
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_LENGTH) {
    const n = dv.getBigUint64(0, true); // exact, even past 2^53
    return fail(`header length ${n} exceeds the ${MAX_HEADER_LENGTH}-byte limit: not a safetensors file`);
  }
  if (8 + lo > fileLength) {
    return fail(
      `header length ${lo} runs past the end of the file (${fileLength} bytes): truncated, or not a safetensors file`,
    );
  }
  return lo;
}

/**
 * What a file that is not safetensors is, from its first bytes, so `decode photo.png` says "a PNG
 * image" rather than quoting a nonsense header length. Undefined for anything unrecognised.
 */
export function sniffOtherFormat(head: Uint8Array): string | undefined {
  const starts = (...sig: number[]) => head.length >= sig.length && sig.every((b, i) => head[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "a PNG image";
  if (starts(0xff, 0xd8, 0xff)) return "a JPEG image";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "a GIF image";
  if (starts(0x52, 0x49, 0x46, 0x46)) return "a RIFF file (WebP image or WAV audio)";
  if (starts(0x50, 0x4b, 0x03, 0x04))
    return "a zip archive (a PyTorch .ckpt/.bin checkpoint? load it with fromSingleFile)";
  if (starts(0x80) && head.length > 1 && head[1] >= 2 && head[1] <= 5)
    return "a Python pickle (a PyTorch checkpoint? load it with fromSingleFile)";
  if (starts(0x47, 0x47, 0x55, 0x46)) return "a GGUF file";
  if (starts(0x25, 0x50, 0x44, 0x46)) return "a PDF document";
  // Text: JSON or a config. A real header length is < 100 MB, so byte 3 of it is never printable.
  if (
    head.length >= 8 &&
    head.subarray(0, 8).every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f))
  ) {
    return head[0] === 0x7b || head[0] === 0x5b ? "JSON text" : "a text file";
  }
  return undefined;
}

/**
 * Parse and validate the header of a complete safetensors file. Nothing is allocated from sizes
 * in the file beyond the header text itself, which is capped and checked against the buffer first.
 */
export function readSafetensorsHeader(bytes: Uint8Array, source = "safetensors"): SafetensorsHeader {
  if (!(bytes instanceof Uint8Array)) throw new AutoencoderKLError(source, "expected the file's bytes as a Uint8Array");
  return parseSafetensorsHeader(bytes, bytes.length, source);
}

/**
 * As readSafetensorsHeader, from a prefix of the file holding at least its 8 + N header bytes and
 * the file's total length: every rule is checked against `fileLength`, so only the tensors a caller
 * wants need to be read afterwards (entries' start/end are absolute file positions).
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileLength: number,
  source = "safetensors",
): SafetensorsHeader {
  const headerLength = safetensorsHeaderLength(prefix, fileLength, source);
  if (8 + headerLength > prefix.length) {
    throw new AutoencoderKLError(
      source,
      `need the first ${8 + headerLength} bytes to read the header, got ${prefix.length}`,
    );
  }
  const bytes = prefix;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch (cause) {
    throw new AutoencoderKLError(source, "header is not valid UTF-8", { cause });
  }
  // Leading JSON whitespace is accepted, as the reference implementation (safetensors 0.8) accepts it.
  const first = /^[ \t\n\r]*/.exec(text)![0].length;
  if (text.charCodeAt(first) !== 0x7b) {
    throw new AutoencoderKLError(
      source,
      "header must be a JSON object starting with '{' (after optional whitespace): not a safetensors file",
    );
  }
  const root = parseStrictJson(text, source, "header");
  if (!(root instanceof Map)) throw new AutoencoderKLError(source, "header must be a JSON object");

  const dataStart = 8 + headerLength;
  const dataLength = fileLength - dataStart;
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const entries: SafetensorsEntry[] = [];

  for (const [name, value] of root) {
    if (name === "__metadata__") {
      if (value === null) continue;
      if (!(value instanceof Map)) {
        throw new AutoencoderKLError(source, `__metadata__ must be an object of strings, got ${describe(value)}`);
      }
      for (const [k, v] of value) {
        if (typeof v !== "string") {
          throw new AutoencoderKLError(source, `__metadata__ ${q(k)} must be a string, got ${describe(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor ${q(name)}`;
    if (!(value instanceof Map)) {
      throw new AutoencoderKLError(
        source,
        `${where}: expected an object with dtype, shape, data_offsets, got ${describe(value)}`,
      );
    }
    const dtype = value.get("dtype");
    const shapeJ = value.get("shape");
    const offsetsJ = value.get("data_offsets");
    if (typeof dtype !== "string") {
      throw new AutoencoderKLError(
        source,
        `${where}: dtype must be a string, got ${dtype === undefined ? "nothing" : describe(dtype)}`,
      );
    }
    const bits = DTYPE_BITS.get(dtype);
    if (bits === undefined) throw new AutoencoderKLError(source, `${where}: unknown dtype ${q(dtype)}`);
    if (!Array.isArray(shapeJ)) {
      throw new AutoencoderKLError(
        source,
        `${where}: shape must be an array of integers, got ${shapeJ === undefined ? "nothing" : describe(shapeJ)}`,
      );
    }
    const shape: number[] = [];
    let elements = 1;
    for (let i = 0; i < shapeJ.length; i++) {
      const d = asIndex(shapeJ[i]);
      if (d === undefined) {
        throw new AutoencoderKLError(
          source,
          `${where}: shape[${i}] = ${describe(shapeJ[i])} is not a non-negative integer below 2^53`,
        );
      }
      shape.push(d);
      elements *= d;
    }
    // The data section bounds any honest size, and comparisons that small are exact in doubles,
    // so a product that rounded (or overflowed to Infinity) can only land above the bound.
    if (elements * bits > dataLength * 8) {
      throw new AutoencoderKLError(
        source,
        `${where}: ${dtype} shape [${shape.join(", ")}] needs more bytes than the ${dataLength}-byte data section holds`,
      );
    }
    if (!Array.isArray(offsetsJ) || offsetsJ.length !== 2) {
      throw new AutoencoderKLError(
        source,
        `${where}: data_offsets must be [begin, end], got ${offsetsJ === undefined ? "nothing" : describe(offsetsJ)}`,
      );
    }
    const begin = asIndex(offsetsJ[0]);
    const end = asIndex(offsetsJ[1]);
    if (begin === undefined || end === undefined) {
      throw new AutoencoderKLError(
        source,
        `${where}: data_offsets [${offsetsJ.map(describe).join(", ")}] must be non-negative integers below 2^53`,
      );
    }
    if (begin > end) throw new AutoencoderKLError(source, `${where}: data_offsets [${begin}, ${end}] begin after end`);
    if (end > dataLength) {
      throw new AutoencoderKLError(
        source,
        `${where}: data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data section`,
      );
    }
    const nbits = elements * bits;
    if (nbits % 8 !== 0) {
      throw new AutoencoderKLError(source, `${where}: ${elements} elements of ${dtype} do not fill whole bytes`);
    }
    if (end - begin !== nbits / 8) {
      throw new AutoencoderKLError(
        source,
        `${where}: ${dtype} shape [${shape.join(", ")}] needs ${nbits / 8} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape, dataOffsets: [begin, end], start: dataStart + begin, end: dataStart + end });
  }

  // Offsets may come in any order in the JSON, but sorted they must tile the data section exactly.
  const sorted = entries
    .slice()
    .sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: string | undefined;
  for (const e of sorted) {
    const [begin, end] = e.dataOffsets;
    if (begin !== cursor) {
      const after =
        previous === undefined ? "the start of the data section" : `tensor ${q(previous)} ending at ${cursor}`;
      throw new AutoencoderKLError(
        source,
        `tensor ${q(e.name)}: data_offsets [${begin}, ${end}] ${begin > cursor ? "leave a gap after" : "overlap"} ${after}`,
      );
    }
    cursor = end;
    previous = e.name;
  }
  if (cursor !== dataLength) {
    throw new AutoencoderKLError(
      source,
      `tensors cover ${cursor} bytes but the data section has ${dataLength} (the last offset must be the end of the file)`,
    );
  }
  return { headerLength, dataStart, metadata, entries };
}

/**
 * The rules a tensor must pass to be converted (float dtype, element limit, byte length), checked from the
 * header alone: streamed loading runs them on every tensor before any is read. Returns the element count.
 */
export function checkSafetensorsEntry(entry: SafetensorsEntry, source = "safetensors"): number {
  if (!CONVERTIBLE.has(entry.dtype)) {
    throw new AutoencoderKLError(
      source,
      `tensor ${q(entry.name)}: dtype ${entry.dtype} cannot be loaded as float32 (supported: ${[...CONVERTIBLE].join(", ")})`,
    );
  }
  const count = entry.shape.reduce((a, b) => a * b, 1);
  if (count > MAX_TENSOR_ELEMENTS) {
    throw new AutoencoderKLError(
      source,
      `tensor ${q(entry.name)}: ${count} elements exceed the ${MAX_TENSOR_ELEMENTS}-element limit`,
    );
  }
  if (entry.end - entry.start !== count * FLOAT_DTYPE_SIZE[entry.dtype as FloatDtype]) badRange(entry, source);
  return count;
}

function badRange(entry: SafetensorsEntry, source: string): never {
  throw new AutoencoderKLError(
    source,
    `tensor ${q(entry.name)}: byte range [${entry.start}, ${entry.end}] does not match the file`,
  );
}

/** Convert one validated entry to a float32 Tensor. Non-float dtypes are refused by name. */
export function readSafetensorsTensor(bytes: Uint8Array, entry: SafetensorsEntry, source = "safetensors"): Tensor {
  const count = checkSafetensorsEntry(entry, source);
  if (entry.start < 0 || entry.end > bytes.length) badRange(entry, source);
  const data = floatBytesToF32(bytes.subarray(entry.start, entry.end), entry.dtype as FloatDtype, count);
  try {
    return new Tensor(data, entry.shape);
  } catch (cause) {
    // e.g. shape [2^40, 0]: valid in the file, empty, but beyond what Tensor accepts per dimension.
    throw new AutoencoderKLError(source, `tensor ${q(entry.name)}: shape [${entry.shape.join(", ")}] is not loadable`, {
      cause,
    });
  }
}

/**
 * Read a whole safetensors file: F32/F16/BF16/F64/F8_E4M3/F8_E5M2 tensors become float32 (exactly, but F64). Tensors rejected by
 * `options.filter` are validated (offsets, sizes) but never converted, so a full Stable Diffusion
 * checkpoint with int64 buffers can be read for its VAE.
 */
export function readSafetensors(
  bytes: Uint8Array,
  source = "safetensors",
  options: ReadSafetensorsOptions = {},
): { metadata: Record<string, string>; tensors: Map<string, Tensor> } {
  const header = readSafetensorsHeader(bytes, source);
  const tensors = new Map<string, Tensor>();
  for (const entry of header.entries) {
    if (options.filter && !options.filter(entry.name, entry)) continue;
    tensors.set(entry.name, readSafetensorsTensor(bytes, entry, source));
  }
  return { metadata: header.metadata, tensors };
}

// ---------------------------------------------------------------------------------------------

export type SafetensorsWriteDtype = "F32" | "F16" | "BF16";

export interface WriteSafetensorsOptions {
  /** Storage dtype for every tensor (default F32). F16/BF16 round to nearest even. */
  dtype?: SafetensorsWriteDtype;
}

/** Code-point order, which is UTF-8 byte order: what the reference implementation sorts names by. */
function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.codePointAt(i)!;
    const cb = b.codePointAt(i)!;
    if (ca !== cb) return ca - cb;
    if (ca > 0xffff) i++;
  }
  return a.length - b.length;
}

/**
 * Serialize tensors as safetensors: names sorted, data contiguous in that order, header JSON padded
 * with spaces to a multiple of 8 so every tensor's data is 8-byte aligned in the file.
 */
export function writeSafetensors(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
  options: WriteSafetensorsOptions = {},
): Uint8Array<ArrayBuffer> {
  const source = "writeSafetensors";
  const dtype = options.dtype ?? "F32";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") {
    throw new AutoencoderKLError(source, `dtype must be "F32", "F16" or "BF16", got ${String(dtype)}`);
  }
  const size = dtype === "F32" ? 4 : 2;
  const pairs: [string, Tensor][] =
    tensors instanceof Map
      ? [...tensors]
      : Object.keys(tensors).map((k) => [k, (tensors as Record<string, Tensor>)[k]]);
  pairs.sort((a, b) => compareNames(a[0], b[0]));

  // Built by hand: a JS object would move integer-like names ("0", "1") ahead of the others.
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== "object") {
      throw new AutoencoderKLError(source, "metadata must be an object of strings");
    }
    const meta: string[] = [];
    for (const k of Object.keys(metadata)) {
      const v = metadata[k];
      if (typeof v !== "string")
        throw new AutoencoderKLError(source, `metadata ${q(k)} must be a string, got ${typeof v}`);
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${meta.join(",")}}`);
  }
  let offset = 0;
  for (const [name, t] of pairs) {
    if (typeof name !== "string" || name === "__metadata__") {
      throw new AutoencoderKLError(source, `tensor name ${q(String(name))} is reserved or not a string`);
    }
    // A lone surrogate has no UTF-8 form: the header would not round-trip.
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(name)) {
      throw new AutoencoderKLError(source, `tensor name ${q(name)} is not valid Unicode (lone surrogate)`);
    }
    if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.shape)) {
      throw new AutoencoderKLError(source, `tensor ${q(name)}: expected a Tensor with Float32Array data`);
    }
    const n = shapeSize(t.shape, `tensor ${q(name)}`);
    if (n !== t.data.length) {
      throw new AutoencoderKLError(
        source,
        `tensor ${q(name)}: shape [${t.shape.join(", ")}] needs ${n} elements, data has ${t.data.length}`,
      );
    }
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + n * size}]}`,
    );
    offset += n * size;
  }
  let json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded, true);
  dv.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  json = new Uint8Array(0);

  let pos = 8 + padded; // multiple of 8, and every tensor size is a multiple of its element size
  for (const [, t] of pairs) {
    const n = t.data.length;
    if (HOST_IS_LITTLE_ENDIAN) {
      if (dtype === "F32") out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4), pos);
      else if (dtype === "F16") f32ToF16(t.data, new Uint16Array(out.buffer, pos, n));
      else f32ToBf16(t.data, new Uint16Array(out.buffer, pos, n));
    } else {
      for (let i = 0; i < n; i++) {
        if (dtype === "F32") dv.setFloat32(pos + i * 4, t.data[i], true);
        else dv.setUint16(pos + i * 2, dtype === "F16" ? f32ToF16Bits(t.data[i]) : f32ToBf16Bits(t.data[i]), true);
      }
    }
    pos += n * size;
  }
  return out;
}
