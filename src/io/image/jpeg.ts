// JPEG reader: baseline and extended sequential (SOF0/SOF1) and progressive (SOF2) Huffman-coded 8-bit
// images, greyscale or 3-component (YCbCr, or RGB when an Adobe marker or the component ids say so), any
// sampling factors, restart intervals. Written from ITU-T T.81 (the JPEG standard). Chroma is upsampled
// with the triangle ("fancy") filter libjpeg uses for 2×1 and 2×2 subsampling, so pixels come out as
// Pillow's — what diffusers users load — within ±1–2 levels (float IDCT here, integer IDCT there).
import { checkPixelLimit, type DecodedImage, imageError } from "./common.js";

/** Zigzag index → natural (row-major) index in an 8×8 block. */
const ZIGZAG = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47,
  55, 62, 63,
]);

const LOOKAHEAD = 9;

interface Huffman {
  /** Codes of up to LOOKAHEAD bits: entry = length << 8 | symbol, 0 = longer code. */
  fast: Uint16Array;
  /** Per code length 1..16: the largest code (-1 when none), first code, index of its first symbol. */
  maxcode: Int32Array;
  mincode: Int32Array;
  valptr: Int32Array;
  values: Uint8Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Quantization table latched at the component's first scan (T.81 allows redefining tables later). */
  quant: Uint16Array | null;
  blocksPerLine: number;
  blocksPerColumn: number;
  /** Storage stride: blocks per line padded to whole MCUs. */
  stride: number;
  coefs: Int16Array;
  pred: number;
}

/** Thrown inside the decoder; decodeJpeg turns it into an AutoencoderKLError naming the file. */
class JpegError extends Error {}

function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman {
  const fast = new Uint16Array(1 << LOOKAHEAD);
  const maxcode = new Int32Array(18).fill(-1);
  const mincode = new Int32Array(17);
  const valptr = new Int32Array(17);
  let code = 0,
    k = 0;
  for (let len = 1; len <= 16; len++) {
    valptr[len] = k;
    mincode[len] = code;
    for (let i = 0; i < counts[len - 1]; i++, k++, code++) {
      if (len <= LOOKAHEAD) {
        const shift = LOOKAHEAD - len;
        for (let j = code << shift, end = (code + 1) << shift; j < end; j++) fast[j] = (len << 8) | values[k];
      }
    }
    if (counts[len - 1]) maxcode[len] = code - 1;
    if (code > 1 << len) throw new JpegError("Huffman table is over-subscribed");
    code <<= 1;
  }
  return { fast, maxcode, mincode, valptr, values };
}

/** Reads entropy-coded bits MSB first, un-stuffing FF 00 and stopping (feeding zeros) at a marker. */
class BitReader {
  bitbuf = 0;
  bitcnt = 0;
  /** Zero bytes fed at a marker or the end of the file; consuming any of them means the data was cut short. */
  padBytes = 0;
  atMarker = false;
  constructor(
    private readonly d: Uint8Array,
    public pos: number,
  ) {}

  private fill(n: number): void {
    while (this.bitcnt < n) {
      let b = 0;
      if (!this.atMarker && this.pos < this.d.length) {
        b = this.d[this.pos];
        if (b === 0xff) {
          const next = this.pos + 1 < this.d.length ? this.d[this.pos + 1] : -1;
          if (next === 0) this.pos += 2;
          else {
            this.atMarker = true;
            b = 0;
            this.padBytes++;
          }
        } else this.pos++;
      } else {
        this.atMarker = true;
        this.padBytes++;
      }
      this.bitbuf = (this.bitbuf << 8) | b;
      this.bitcnt += 8;
    }
  }

  bits(n: number): number {
    if (n === 0) return 0;
    this.fill(n);
    this.bitcnt -= n;
    const v = this.bitbuf >>> this.bitcnt;
    this.bitbuf &= (1 << this.bitcnt) - 1;
    return v;
  }

  bit(): number {
    return this.bits(1);
  }

  /** A magnitude category s (T.81 F.2.2.1): s bits, negative values in one's-complement-like form. */
  receiveExtend(s: number): number {
    if (s === 0) return 0;
    const v = this.bits(s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
  }

  decode(h: Huffman): number {
    this.fill(16);
    const e = h.fast[this.bitbuf >>> (this.bitcnt - LOOKAHEAD)];
    if (e) {
      this.bitcnt -= e >> 8;
      this.bitbuf &= (1 << this.bitcnt) - 1;
      return e & 255;
    }
    for (let len = LOOKAHEAD + 1; len <= 16; len++) {
      const code = this.bitbuf >>> (this.bitcnt - len);
      if (code <= h.maxcode[len]) {
        this.bitcnt -= len;
        this.bitbuf &= (1 << this.bitcnt) - 1;
        return h.values[h.valptr[len] + code - h.mincode[len]];
      }
    }
    throw new JpegError("invalid Huffman code in scan data");
  }

  /** True when bits past the end of the real data were used. */
  overran(): boolean {
    return this.padBytes * 8 > this.bitcnt;
  }

  /** Restart: drop buffered bits and consume the expected RSTn marker. */
  restart(expected: number): void {
    if (this.overran()) throw new JpegError("scan data is truncated");
    this.bitbuf = this.bitcnt = this.padBytes = 0;
    this.atMarker = false;
    const d = this.d;
    while (this.pos + 1 < d.length && d[this.pos] === 0xff && d[this.pos + 1] === 0xff) this.pos++;
    if (this.pos + 1 < d.length && d[this.pos] === 0xff && d[this.pos + 1] === 0xd0 + expected) this.pos += 2;
    else throw new JpegError(`expected restart marker RST${expected} at byte ${this.pos}`);
  }
}

/** Separable float 8×8 inverse DCT (T.81 A.3.3), exact up to rounding. */
const IDCT_COS = new Float64Array(64);
for (let x = 0; x < 8; x++) {
  for (let u = 0; u < 8; u++)
    IDCT_COS[x * 8 + u] = ((u === 0 ? Math.SQRT1_2 : 1) * Math.cos(((2 * x + 1) * u * Math.PI) / 16)) / 2;
}

function idctBlock(
  coefs: Int16Array,
  at: number,
  quant: Uint16Array,
  tmp: Float64Array,
  out: Uint8Array,
  outAt: number,
  outStride: number,
): void {
  // Rows: tmp[y][x] = Σ_u C(u) F(y,u) cos(...); rows that are all zero past DC are constant.
  for (let y = 0; y < 8; y++) {
    const r = at + y * 8;
    let nonzero = false;
    for (let u = 1; u < 8; u++) if (coefs[r + u]) nonzero = true;
    if (!nonzero) {
      const dc = (coefs[r] * quant[y * 8] * Math.SQRT1_2) / 2;
      for (let x = 0; x < 8; x++) tmp[y * 8 + x] = dc;
      continue;
    }
    for (let x = 0; x < 8; x++) {
      let s = 0;
      for (let u = 0; u < 8; u++) s += IDCT_COS[x * 8 + u] * coefs[r + u] * quant[y * 8 + u];
      tmp[y * 8 + x] = s;
    }
  }
  for (let x = 0; x < 8; x++) {
    for (let y = 0; y < 8; y++) {
      let s = 0;
      for (let v = 0; v < 8; v++) s += IDCT_COS[y * 8 + v] * tmp[v * 8 + x];
      const p = Math.round(s + 128);
      out[outAt + y * outStride + x] = p < 0 ? 0 : p > 255 ? 255 : p;
    }
  }
}

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

const SOF_NAMES: Record<number, string> = {
  0xc3: "lossless",
  0xc5: "differential sequential",
  0xc6: "differential progressive",
  0xc7: "differential lossless",
  0xc9: "arithmetic-coded sequential",
  0xca: "arithmetic-coded progressive",
  0xcb: "arithmetic-coded lossless",
  0xcd: "arithmetic-coded differential sequential",
  0xce: "arithmetic-coded differential progressive",
  0xcf: "arithmetic-coded differential lossless",
};

export function decodeJpeg(bytes: Uint8Array, name: string, maxPixels: number): DecodedImage {
  try {
    return decode(bytes, name, maxPixels);
  } catch (e) {
    if (e instanceof JpegError) throw imageError(name, `JPEG ${e.message}`, e);
    if (e instanceof RangeError) throw imageError(name, `JPEG is corrupt (${e.message})`, e);
    throw e;
  }
}

function decode(d: Uint8Array, name: string, maxPixels: number): DecodedImage {
  if (!isJpeg(d)) throw new JpegError("file does not start with an SOI marker");
  const quant: (Uint16Array | null)[] = [null, null, null, null];
  const dcTables: (Huffman | null)[] = [null, null, null, null];
  const acTables: (Huffman | null)[] = [null, null, null, null];
  let frame: {
    width: number;
    height: number;
    progressive: boolean;
    comps: Component[];
    hmax: number;
    vmax: number;
    mcusX: number;
    mcusY: number;
  } | null = null;
  let restartInterval = 0;
  let adobeTransform = -1;
  let jfif = false;
  let scans = 0;
  let pos = 2;
  const u16 = (p: number) => {
    if (p + 2 > d.length) throw new JpegError("is truncated");
    return (d[p] << 8) | d[p + 1];
  };

  for (;;) {
    // Markers may be preceded by any number of FF fill bytes.
    if (pos >= d.length) {
      if (frame && scans > 0) break; // lenient: a missing EOI after complete scans
      throw new JpegError("is truncated (no image data)");
    }
    if (d[pos] !== 0xff) throw new JpegError(`expected a marker at byte ${pos}, found 0x${d[pos].toString(16)}`);
    while (pos < d.length && d[pos] === 0xff) pos++;
    if (pos >= d.length) throw new JpegError("is truncated");
    const marker = 0xff00 | d[pos++];
    if (marker === 0xffd9) break; // EOI
    if (marker >= 0xffd0 && marker <= 0xffd7) continue; // stray RSTn: no payload
    const len = u16(pos);
    if (len < 2 || pos + len > d.length)
      throw new JpegError(
        `segment 0x${marker.toString(16)} at byte ${pos - 2} runs past the end of the file (truncated)`,
      );
    const seg = d.subarray(pos + 2, pos + len);
    pos += len;
    switch (marker) {
      case 0xffdb: {
        // DQT: one or more tables, 8- or 16-bit entries in zigzag order.
        let p = 0;
        while (p < seg.length) {
          const pq = seg[p] >> 4,
            tq = seg[p] & 15;
          p++;
          if (tq > 3 || pq > 1) throw new JpegError("has an invalid quantization table header");
          if (p + 64 * (pq + 1) > seg.length) throw new JpegError("quantization table is truncated");
          const t = new Uint16Array(64);
          for (let k = 0; k < 64; k++) t[ZIGZAG[k]] = pq ? (seg[p + 2 * k] << 8) | seg[p + 2 * k + 1] : seg[p + k];
          p += 64 * (pq + 1);
          quant[tq] = t;
        }
        break;
      }
      case 0xffc4: {
        // DHT: one or more tables: class/id, 16 counts, symbols.
        let p = 0;
        while (p < seg.length) {
          if (p + 17 > seg.length) throw new JpegError("Huffman table is truncated");
          const tc = seg[p] >> 4,
            th = seg[p] & 15;
          if (tc > 1 || th > 3) throw new JpegError("has an invalid Huffman table header");
          const counts = seg.subarray(p + 1, p + 17);
          const total = counts.reduce((a, b) => a + b, 0);
          if (total > 256 || p + 17 + total > seg.length)
            throw new JpegError("Huffman table is truncated or too large");
          const table = buildHuffman(counts, seg.slice(p + 17, p + 17 + total));
          (tc === 0 ? dcTables : acTables)[th] = table;
          p += 17 + total;
        }
        break;
      }
      case 0xffdd:
        if (seg.length < 2) throw new JpegError("DRI segment is too short");
        restartInterval = (seg[0] << 8) | seg[1];
        break;
      case 0xffc0:
      case 0xffc1:
      case 0xffc2: {
        if (frame) throw new JpegError("has more than one frame header (SOF)");
        if (seg.length < 6) throw new JpegError("SOF segment is too short");
        if (seg[0] !== 8) throw new JpegError(`samples are ${seg[0]}-bit; only 8-bit JPEG is supported`);
        const height = (seg[1] << 8) | seg[2],
          width = (seg[3] << 8) | seg[4],
          nc = seg[5];
        if (height === 0) throw new JpegError("height is defined by a DNL marker, which is not supported");
        checkPixelLimit(name, "JPEG", width, height, maxPixels);
        if (nc !== 1 && nc !== 3)
          throw new JpegError(`has ${nc} components; only greyscale (1) and colour (3) are supported (CMYK is not)`);
        if (seg.length < 6 + 3 * nc) throw new JpegError("SOF segment is too short");
        const comps: Component[] = [];
        for (let i = 0; i < nc; i++) {
          const o = 6 + 3 * i;
          const h = seg[o + 1] >> 4,
            v = seg[o + 1] & 15,
            tq = seg[o + 2];
          if (h < 1 || h > 4 || v < 1 || v > 4)
            throw new JpegError(`component ${seg[o]} has sampling factors ${h}×${v}, outside 1–4`);
          if (tq > 3) throw new JpegError(`component ${seg[o]} uses quantization table ${tq}, outside 0–3`);
          if (comps.some((c) => c.id === seg[o])) throw new JpegError(`component id ${seg[o]} appears twice`);
          comps.push({
            id: seg[o],
            h,
            v,
            tq,
            quant: null,
            blocksPerLine: 0,
            blocksPerColumn: 0,
            stride: 0,
            coefs: new Int16Array(0),
            pred: 0,
          });
        }
        const hmax = Math.max(...comps.map((c) => c.h)),
          vmax = Math.max(...comps.map((c) => c.v));
        const mcusX = Math.ceil(width / (8 * hmax)),
          mcusY = Math.ceil(height / (8 * vmax));
        for (const c of comps) {
          c.blocksPerLine = Math.ceil(Math.ceil((width * c.h) / hmax) / 8);
          c.blocksPerColumn = Math.ceil(Math.ceil((height * c.v) / vmax) / 8);
          c.stride = mcusX * c.h;
          c.coefs = new Int16Array(c.stride * mcusY * c.v * 64);
        }
        frame = { width, height, progressive: marker === 0xffc2, comps, hmax, vmax, mcusX, mcusY };
        break;
      }
      case 0xffda: {
        if (!frame) throw new JpegError("has a scan (SOS) before the frame header (SOF)");
        pos = decodeScan(d, pos, seg, frame, dcTables, acTables, quant, restartInterval);
        scans++;
        break;
      }
      case 0xffee:
        // Adobe APP14: its transform flag says whether 3 components are YCbCr (1) or RGB (0).
        if (seg.length >= 12 && String.fromCharCode(...seg.subarray(0, 5)) === "Adobe") adobeTransform = seg[11];
        break;
      case 0xffe0:
        if (seg.length >= 5 && String.fromCharCode(...seg.subarray(0, 4)) === "JFIF" && seg[4] === 0) jfif = true;
        break;
      default:
        if (SOF_NAMES[marker & 0xff])
          throw new JpegError(
            `uses ${SOF_NAMES[marker & 0xff]} coding, which is not supported (baseline and progressive Huffman only)`,
          );
      // Other APPn, COM, DNL and unknown segments carry nothing we need.
    }
  }
  if (!frame) throw new JpegError("has no frame header (SOF)");
  if (scans === 0) throw new JpegError("has no image data (no scans)");

  const { width, height, comps, hmax, vmax } = frame;
  // Component planes at their own resolution, then upsampled to full size.
  const tmp = new Float64Array(64);
  const planes = comps.map((c) => {
    const pw = c.stride * 8;
    const plane = new Uint8Array(pw * frame!.mcusY * c.v * 8);
    const q = c.quant ?? quant[c.tq];
    if (!q) throw new JpegError(`component ${c.id} has no quantization table ${c.tq}`);
    for (let by = 0; by < c.blocksPerColumn; by++) {
      for (let bx = 0; bx < c.blocksPerLine; bx++) {
        idctBlock(c.coefs, (by * c.stride + bx) * 64, q, tmp, plane, by * 8 * pw + bx * 8, pw);
      }
    }
    return upsample(plane, pw, c, hmax, vmax, width, height);
  });
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  if (comps.length === 1) {
    const g = planes[0];
    for (let i = 0; i < plane; i++) out[i] = out[plane + i] = out[2 * plane + i] = g[i] / 127.5 - 1;
  } else {
    const rgbIds = comps[0].id === 0x52 && comps[1].id === 0x47 && comps[2].id === 0x42;
    const isRgb = adobeTransform === 0 || (adobeTransform < 0 && !jfif && rgbIds);
    const [p0, p1, p2] = planes;
    for (let i = 0; i < plane; i++) {
      let r: number, g: number, b: number;
      if (isRgb) {
        r = p0[i];
        g = p1[i];
        b = p2[i];
      } else {
        // JFIF YCbCr → RGB (T.871), rounded and clamped.
        const y = p0[i],
          cb = p1[i] - 128,
          cr = p2[i] - 128;
        r = clamp255(Math.round(y + 1.402 * cr));
        g = clamp255(Math.round(y - 0.344136286 * cb - 0.714136286 * cr));
        b = clamp255(Math.round(y + 1.772 * cb));
      }
      out[i] = r / 127.5 - 1;
      out[plane + i] = g / 127.5 - 1;
      out[2 * plane + i] = b / 127.5 - 1;
    }
  }
  return { width, height, data: out };
}

const clamp255 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

/**
 * Component plane → full resolution. 2×1, 1×2 and 2×2 use libjpeg's triangle filter (3/4 nearer sample,
 * 1/4 farther, edges replicated, its rounding biases); other ratios replicate the nearest sample.
 */
function upsample(
  plane: Uint8Array,
  pw: number,
  c: Component,
  hmax: number,
  vmax: number,
  width: number,
  height: number,
): Uint8Array {
  const cw = Math.ceil((width * c.h) / hmax),
    ch = Math.ceil((height * c.v) / vmax);
  const out = new Uint8Array(width * height);
  const hs = hmax / c.h,
    vs = vmax / c.v;
  if (hs === 1 && vs === 1) {
    for (let y = 0; y < height; y++) out.set(plane.subarray(y * pw, y * pw + width), y * width);
  } else if (hs === 2 && vs === 1) {
    for (let y = 0; y < height; y++) {
      const row = y * pw;
      for (let x = 0; x < width; x++) {
        const i = x >> 1;
        const here = plane[row + i];
        if (x & 1) out[y * width + x] = (3 * here + plane[row + Math.min(i + 1, cw - 1)] + 2) >> 2;
        else out[y * width + x] = (3 * here + plane[row + Math.max(i - 1, 0)] + 1) >> 2;
      }
    }
  } else if (hs === 1 && vs === 2) {
    for (let y = 0; y < height; y++) {
      const r = y >> 1;
      const nearer = y & 1 ? Math.min(r + 1, ch - 1) : Math.max(r - 1, 0);
      const bias = y & 1 ? 2 : 1;
      for (let x = 0; x < width; x++) out[y * width + x] = (3 * plane[r * pw + x] + plane[nearer * pw + x] + bias) >> 2;
    }
  } else if (hs === 2 && vs === 2) {
    const colsum = new Int32Array(cw);
    for (let y = 0; y < height; y++) {
      const r = y >> 1;
      const nearer = y & 1 ? Math.min(r + 1, ch - 1) : Math.max(r - 1, 0);
      for (let i = 0; i < cw; i++) colsum[i] = 3 * plane[r * pw + i] + plane[nearer * pw + i];
      for (let x = 0; x < width; x++) {
        const i = x >> 1;
        if (x & 1) out[y * width + x] = (3 * colsum[i] + colsum[Math.min(i + 1, cw - 1)] + 7) >> 4;
        else out[y * width + x] = (3 * colsum[i] + colsum[Math.max(i - 1, 0)] + 8) >> 4;
      }
    }
  } else {
    for (let y = 0; y < height; y++) {
      const sy = Math.min(Math.floor((y * c.v) / vmax), ch - 1);
      for (let x = 0; x < width; x++)
        out[y * width + x] = plane[sy * pw + Math.min(Math.floor((x * c.h) / hmax), cw - 1)];
    }
  }
  return out;
}

interface Frame {
  progressive: boolean;
  comps: Component[];
  mcusX: number;
  mcusY: number;
}

/** Decodes one scan's entropy-coded data; returns the file position of the marker after it. */
function decodeScan(
  d: Uint8Array,
  pos: number,
  seg: Uint8Array,
  frame: Frame,
  dcTables: (Huffman | null)[],
  acTables: (Huffman | null)[],
  quant: (Uint16Array | null)[],
  restartInterval: number,
): number {
  const ns = seg[0];
  if (!(ns >= 1 && ns <= 4) || seg.length < 4 + 2 * ns) throw new JpegError("SOS segment is malformed");
  const scomps: { c: Component; dc: Huffman | null; ac: Huffman | null }[] = [];
  for (let i = 0; i < ns; i++) {
    const id = seg[1 + 2 * i],
      td = seg[2 + 2 * i] >> 4,
      ta = seg[2 + 2 * i] & 15;
    const c = frame.comps.find((k) => k.id === id);
    if (!c) throw new JpegError(`scan refers to component ${id}, which the frame does not have`);
    if (td > 3 || ta > 3) throw new JpegError("scan selects a Huffman table outside 0–3");
    scomps.push({ c, dc: dcTables[td], ac: acTables[ta] });
  }
  const o = 1 + 2 * ns;
  const ss = seg[o],
    se = seg[o + 1],
    ah = seg[o + 2] >> 4,
    al = seg[o + 2] & 15;
  if (frame.progressive) {
    if (ss > se || se > 63 || (ss === 0 && se !== 0) || (ss > 0 && ns !== 1) || al > 13)
      throw new JpegError(`progressive scan has invalid parameters Ss=${ss} Se=${se} Ah=${ah} Al=${al}`);
  } else if (ss !== 0 || se !== 63 || ah !== 0 || al !== 0) {
    throw new JpegError(`sequential scan has invalid parameters Ss=${ss} Se=${se} Ah=${ah} Al=${al}`);
  }
  const dcScan = ss === 0;
  for (const s of scomps) {
    if (!s.c.quant) s.c.quant = quant[s.c.tq] ? quant[s.c.tq]!.slice() : null;
    if (dcScan && ah === 0 && !s.dc) throw new JpegError(`scan uses a DC Huffman table that was never defined`);
    if ((!frame.progressive || !dcScan) && !s.ac)
      throw new JpegError(`scan uses an AC Huffman table that was never defined`);
    s.c.pred = 0;
  }

  const br = new BitReader(d, pos);
  let eobrun = 0;
  const p1 = 1 << al,
    m1 = -1 << al;

  const decodeBlock = (s: (typeof scomps)[number], at: number) => {
    const blk = s.c.coefs;
    if (!frame.progressive) {
      const t = br.decode(s.dc!);
      s.c.pred += br.receiveExtend(t);
      blk[at] = s.c.pred;
      for (let k = 1; k < 64; ) {
        const rs = br.decode(s.ac!);
        const r = rs >> 4,
          sz = rs & 15;
        if (sz === 0) {
          if (r < 15) break;
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) break;
        blk[at + ZIGZAG[k]] = br.receiveExtend(sz);
        k++;
      }
      return;
    }
    if (dcScan) {
      if (ah === 0) {
        const t = br.decode(s.dc!);
        s.c.pred += br.receiveExtend(t);
        blk[at] = s.c.pred * p1;
      } else if (br.bit()) blk[at] |= p1;
      return;
    }
    if (ah === 0) {
      // AC first pass: runs of zeros, band-limited, with end-of-band runs spanning blocks.
      if (eobrun > 0) {
        eobrun--;
        return;
      }
      for (let k = ss; k <= se; ) {
        const rs = br.decode(s.ac!);
        const r = rs >> 4,
          sz = rs & 15;
        if (sz === 0) {
          if (r < 15) {
            eobrun = (1 << r) - 1 + br.bits(r);
            break;
          }
          k += 16;
          continue;
        }
        k += r;
        if (k > se) break;
        blk[at + ZIGZAG[k]] = br.receiveExtend(sz) * p1;
        k++;
      }
      return;
    }
    // AC refinement (T.81 G.1.2.3): one correction bit for each coefficient already nonzero, new
    // coefficients of magnitude 1 placed after the given number of still-zero ones.
    const refine = (k: number) => {
      const idx = at + ZIGZAG[k];
      if (br.bit() && (blk[idx] & p1) === 0) blk[idx] += blk[idx] >= 0 ? p1 : m1;
    };
    let k = ss;
    if (eobrun === 0) {
      for (; k <= se; k++) {
        const rs = br.decode(s.ac!);
        let r = rs >> 4;
        const sz = rs & 15;
        let value = 0;
        if (sz) {
          if (sz !== 1) throw new JpegError("refinement scan has a coefficient of magnitude other than 1");
          value = br.bit() ? p1 : m1;
        } else if (r !== 15) {
          eobrun = (1 << r) + br.bits(r);
          break;
        }
        for (; k <= se; k++) {
          if (blk[at + ZIGZAG[k]] !== 0) refine(k);
          else if (--r < 0) break;
        }
        if (value && k <= se) blk[at + ZIGZAG[k]] = value;
      }
    }
    if (eobrun > 0) {
      for (; k <= se; k++) if (blk[at + ZIGZAG[k]] !== 0) refine(k);
      eobrun--;
    }
  };

  let units: number, unitsX: number;
  if (ns === 1) {
    unitsX = scomps[0].c.blocksPerLine;
    units = unitsX * scomps[0].c.blocksPerColumn;
  } else {
    unitsX = frame.mcusX;
    units = frame.mcusX * frame.mcusY;
  }
  let rst = 0;
  for (let u = 0; u < units; u++) {
    if (restartInterval && u > 0 && u % restartInterval === 0) {
      br.restart(rst);
      rst = (rst + 1) & 7;
      eobrun = 0;
      for (const s of scomps) s.c.pred = 0;
    }
    const ux = u % unitsX,
      uy = (u - ux) / unitsX;
    if (ns === 1) {
      const s = scomps[0];
      decodeBlock(s, (uy * s.c.stride + ux) * 64);
    } else {
      for (const s of scomps) {
        for (let v = 0; v < s.c.v; v++) {
          for (let h = 0; h < s.c.h; h++) decodeBlock(s, ((uy * s.c.v + v) * s.c.stride + ux * s.c.h + h) * 64);
        }
      }
    }
  }
  if (br.overran()) throw new JpegError("scan data is truncated");
  // Resume marker parsing at the next marker (skipping any padding or garbage after the scan).
  let p = br.pos;
  while (p + 1 < d.length && !(d[p] === 0xff && d[p + 1] !== 0 && !(d[p + 1] >= 0xd0 && d[p + 1] <= 0xd7))) p++;
  return p + 1 < d.length ? p : d.length;
}
