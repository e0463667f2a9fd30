// PNG reader (every color type and bit depth, Adam7 interlacing; ISO/IEC 15948) and writer (8-bit RGB or
// grey). Alpha and tRNS transparency are dropped: the VAE sees colour only, not composited on a background.
import { crc32 } from "./checksums.js";
import { checkPixelLimit, type DecodedImage, imageError } from "./common.js";
import { zlibCompress } from "./deflate.js";
import { InflateError, zlibDecompress } from "./inflate.js";

export const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** Samples per pixel by color type, and the bit depths each allows. */
const COLOR_TYPES: Record<number, { channels: number; depths: number[]; name: string }> = {
  0: { channels: 1, depths: [1, 2, 4, 8, 16], name: "greyscale" },
  2: { channels: 3, depths: [8, 16], name: "RGB" },
  3: { channels: 1, depths: [1, 2, 4, 8], name: "palette" },
  4: { channels: 2, depths: [8, 16], name: "greyscale+alpha" },
  6: { channels: 4, depths: [8, 16], name: "RGBA" },
};

/** Adam7 passes: first column, first row, column step, row step. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

const u32 = (b: Uint8Array, p: number) => ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlace: number;
}

export function decodePng(bytes: Uint8Array, name: string, maxPixels: number): DecodedImage {
  if (!isPng(bytes)) throw imageError(name, "not a PNG file (bad signature)");
  let pos = 8;
  let header: Header | null = null;
  let palette: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let idatBytes = 0;
  let ended = false;
  while (!ended) {
    if (pos + 8 > bytes.length) throw imageError(name, "PNG is truncated (no IEND chunk)");
    const len = u32(bytes, pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    if (!/^[A-Za-z]{4}$/.test(type))
      throw imageError(name, `PNG chunk at byte ${pos} has an invalid type (file is corrupt)`);
    if (len > 0x7fffffff || pos + 12 + len > bytes.length)
      throw imageError(name, `PNG chunk ${type} at byte ${pos} runs past the end of the file (truncated)`);
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (crc32(bytes, pos + 4, pos + 8 + len) !== u32(bytes, pos + 8 + len)) {
      throw imageError(name, `PNG chunk ${type} at byte ${pos} fails its CRC check (file is corrupt)`);
    }
    pos += 12 + len;
    if (!header && type !== "IHDR") throw imageError(name, `PNG must start with an IHDR chunk, found ${type}`);
    switch (type) {
      case "IHDR": {
        if (header) throw imageError(name, "PNG has more than one IHDR chunk");
        if (len !== 13) throw imageError(name, `PNG IHDR must be 13 bytes, got ${len}`);
        const h: Header = {
          width: u32(data, 0),
          height: u32(data, 4),
          depth: data[8],
          colorType: data[9],
          interlace: data[12],
        };
        const ct = COLOR_TYPES[h.colorType];
        if (!ct) throw imageError(name, `PNG color type ${h.colorType} is not one of 0, 2, 3, 4, 6`);
        if (!ct.depths.includes(h.depth))
          throw imageError(name, `PNG ${ct.name} images allow bit depths ${ct.depths.join(", ")}, got ${h.depth}`);
        if (data[10] !== 0 || data[11] !== 0) throw imageError(name, "PNG compression and filter methods must be 0");
        if (h.interlace > 1) throw imageError(name, `PNG interlace method ${h.interlace} is not 0 or 1`);
        if (h.width > 0x7fffffff || h.height > 0x7fffffff)
          throw imageError(name, "PNG width and height must be below 2^31");
        checkPixelLimit(name, "PNG", h.width, h.height, maxPixels);
        header = h;
        break;
      }
      case "PLTE":
        if (len % 3 !== 0 || len === 0 || len > 768)
          throw imageError(name, `PNG palette must hold 1 to 256 RGB entries, got ${len} bytes`);
        palette = data;
        break;
      case "IDAT":
        idat.push(data);
        idatBytes += len;
        break;
      case "IEND":
        ended = true;
        break;
      default:
        // Bit 5 of the first letter clear = critical: a chunk we do not know may change the meaning of the pixels.
        if (!(type.charCodeAt(0) & 0x20)) throw imageError(name, `PNG has an unknown critical chunk ${type}`);
    }
  }
  const h = header!;
  if (h.colorType === 3 && !palette) throw imageError(name, "PNG palette image has no PLTE chunk");
  if (idat.length === 0) throw imageError(name, "PNG has no image data (IDAT)");
  const channels = COLOR_TYPES[h.colorType].channels;
  const bitsPerPixel = channels * h.depth;
  const passes = h.interlace ? ADAM7 : [[0, 0, 1, 1]];
  const passDims = passes.map(([x0, y0, dx, dy]) => {
    const pw = h.width > x0 ? Math.ceil((h.width - x0) / dx) : 0;
    const ph = h.height > y0 ? Math.ceil((h.height - y0) / dy) : 0;
    return { pw, ph, rowBytes: Math.ceil((pw * bitsPerPixel) / 8) };
  });
  let rawSize = 0;
  for (const d of passDims) if (d.pw && d.ph) rawSize += d.ph * (1 + d.rowBytes);

  const compressed = idat.length === 1 ? idat[0] : new Uint8Array(idatBytes);
  if (idat.length > 1) {
    let o = 0;
    for (const c of idat) {
      compressed.set(c, o);
      o += c.length;
    }
  }
  let raw: Uint8Array;
  try {
    raw = zlibDecompress(compressed, rawSize);
  } catch (e) {
    if (e instanceof InflateError) throw imageError(name, `PNG image data is corrupt: ${e.message}`, e);
    throw e;
  }

  const { width: w, height: hh } = h;
  const plane = w * hh;
  const out = new Float32Array(3 * plane);
  // Sample value → [-1, 1]: 8-bit as pixel / 127.5 - 1 (the project's definition), other depths scaled to full range.
  const maxv = (1 << h.depth) - 1;
  const scale = h.depth === 8 || h.colorType === 3 ? 1 / 127.5 : 2 / maxv;
  let lut: Float32Array | null = null;
  if (h.colorType === 3) {
    const pal = palette!;
    const entries = pal.length / 3;
    lut = new Float32Array(256 * 3).fill(NaN);
    for (let i = 0; i < entries; i++) for (let c = 0; c < 3; c++) lut[i * 3 + c] = pal[i * 3 + c] / 127.5 - 1;
  }
  const bpp = Math.max(1, bitsPerPixel >> 3);
  let off = 0;
  passes.forEach(([x0, y0, dx, dy], p) => {
    const { pw, ph, rowBytes } = passDims[p];
    if (!pw || !ph) return;
    let prior = new Uint8Array(rowBytes);
    let cur = new Uint8Array(rowBytes);
    for (let r = 0; r < ph; r++) {
      const filter = raw[off];
      const line = raw.subarray(off + 1, off + 1 + rowBytes);
      off += 1 + rowBytes;
      unfilter(filter, line, prior, cur, bpp, name);
      const y = y0 + r * dy;
      const base = y * w;
      for (let i = 0; i < pw; i++) {
        const o = base + x0 + i * dx;
        let rv: number, gv: number, bv: number;
        if (h.colorType === 3) {
          const idx = sampleAt(cur, i, h.depth);
          rv = lut![idx * 3];
          if (Number.isNaN(rv))
            throw imageError(
              name,
              `PNG pixel uses palette index ${idx}, but the palette has ${palette!.length / 3} entries`,
            );
          gv = lut![idx * 3 + 1];
          bv = lut![idx * 3 + 2];
        } else if (channels <= 2) {
          rv = gv = bv = sampleAt(cur, i * channels, h.depth) * scale - 1;
        } else {
          rv = sampleAt(cur, i * channels, h.depth) * scale - 1;
          gv = sampleAt(cur, i * channels + 1, h.depth) * scale - 1;
          bv = sampleAt(cur, i * channels + 2, h.depth) * scale - 1;
        }
        out[o] = rv;
        out[plane + o] = gv;
        out[2 * plane + o] = bv;
      }
      const t = prior;
      prior = cur;
      cur = t;
    }
  });
  return { width: w, height: hh, data: out };
}

/** The k-th sample of a row of `depth`-bit samples (packed most significant bits first below 8). */
function sampleAt(row: Uint8Array, k: number, depth: number): number {
  if (depth === 8) return row[k];
  if (depth === 16) return (row[2 * k] << 8) | row[2 * k + 1];
  const bit = k * depth;
  return (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
}

function unfilter(
  filter: number,
  line: Uint8Array,
  prior: Uint8Array,
  cur: Uint8Array,
  bpp: number,
  name: string,
): void {
  const n = line.length;
  switch (filter) {
    case 0:
      cur.set(line);
      break;
    case 1:
      for (let i = 0; i < n; i++) cur[i] = line[i] + (i >= bpp ? cur[i - bpp] : 0);
      break;
    case 2:
      for (let i = 0; i < n; i++) cur[i] = line[i] + prior[i];
      break;
    case 3:
      for (let i = 0; i < n; i++) cur[i] = line[i] + (((i >= bpp ? cur[i - bpp] : 0) + prior[i]) >> 1);
      break;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = i >= bpp ? cur[i - bpp] : 0,
          b = prior[i],
          c = i >= bpp ? prior[i - bpp] : 0;
        cur[i] = line[i] + paeth(a, b, c);
      }
      break;
    default:
      throw imageError(name, `PNG row uses filter type ${filter}, not 0–4 (file is corrupt)`);
  }
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a),
    pb = Math.abs(p - b),
    pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

/**
 * Encodes 8-bit interleaved pixels (1 = grey, 3 = RGB channels) as a PNG. Each row gets the filter with
 * the smallest sum of absolute byte values (the usual heuristic), then the whole image is deflated.
 */
export function encodePng(pixels: Uint8Array, width: number, height: number, channels: 1 | 3): Uint8Array {
  const rowBytes = width * channels;
  const raw = new Uint8Array(height * (rowBytes + 1));
  const zero = new Uint8Array(rowBytes);
  const trial = new Uint8Array(rowBytes);
  for (let y = 0; y < height; y++) {
    const cur = pixels.subarray(y * rowBytes, (y + 1) * rowBytes);
    const prior = y > 0 ? pixels.subarray((y - 1) * rowBytes, y * rowBytes) : zero;
    let best = -1,
      bestCost = Infinity;
    const dst = raw.subarray(y * (rowBytes + 1) + 1, (y + 1) * (rowBytes + 1));
    for (let f = 0; f < 5; f++) {
      let cost = 0;
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= channels ? cur[i - channels] : 0,
          b = prior[i],
          c = i >= channels ? prior[i - channels] : 0;
        const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : paeth(a, b, c);
        const v = (cur[i] - pred) & 0xff;
        trial[i] = v;
        cost += v < 128 ? v : 256 - v;
      }
      if (cost < bestCost) {
        bestCost = cost;
        best = f;
        dst.set(trial);
      }
    }
    raw[y * (rowBytes + 1)] = best;
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8;
  ihdr[9] = channels === 3 ? 2 : 0;
  const parts = [
    new Uint8Array(PNG_SIGNATURE),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlibCompress(raw)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
