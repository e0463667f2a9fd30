// Image codecs against independent decoders: pngjs and jpeg-js (test-only dependencies), zlib for
// compression, and libjpeg-turbo's own output for a few embedded JPEGs.

import { readFileSync } from "node:fs";
import { deflateSync, inflateSync, crc32 as zcrc32 } from "node:zlib";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { AutoencoderKLError } from "../src/errors.js";
import { cropTo, decodeImage, padToMultiple, readImage, writePng } from "../src/io/image/index.js";
import { Tensor } from "../src/tensor/tensor.js";

// ---------------------------------------------------------------------------------------------
// A test-side PNG writer (zlib does the compression) that can produce what pngjs cannot: every color
// type and bit depth, palettes with tRNS, Adam7 interlacing, all five filters, split IDAT chunks.

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zcrc32(Buffer.concat([head.subarray(4), data])) >>> 0);
  return Buffer.concat([head, data, crc]);
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

function paeth(a: number, b: number, c: number) {
  const p = a + b - c,
    pa = Math.abs(p - a),
    pb = Math.abs(p - b),
    pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

interface PngSpec {
  width: number;
  height: number;
  colorType: number;
  depth: number;
  interlace?: boolean;
  seed?: number;
  level?: number;
  idatSplit?: number;
  paletteSize?: number;
  trns?: boolean;
}

/** Random samples → PNG bytes. Samples are per pixel, per channel, in [0, 2^depth). */
function makePng(spec: PngSpec): Buffer {
  const { width: w, height: h, colorType, depth } = spec;
  const rnd = mulberry32(spec.seed ?? 1);
  const ch = CHANNELS[colorType];
  const max = colorType === 3 ? (spec.paletteSize ?? 1 << depth) - 1 : (1 << depth) - 1;
  const samples = new Uint16Array(w * h * ch);
  for (let i = 0; i < samples.length; i++) samples[i] = Math.min(max, Math.floor(rnd() * (max + 1)));
  const bpp = Math.max(1, (ch * depth) >> 3);
  const raw: number[] = [];
  const passes = spec.interlace ? ADAM7 : [[0, 0, 1, 1]];
  for (const [x0, y0, dx, dy] of passes) {
    const pw = w > x0 ? Math.ceil((w - x0) / dx) : 0,
      ph = h > y0 ? Math.ceil((h - y0) / dy) : 0;
    if (!pw || !ph) continue;
    const rowBytes = Math.ceil((pw * ch * depth) / 8);
    let prior = new Uint8Array(rowBytes);
    for (let r = 0; r < ph; r++) {
      const line = new Uint8Array(rowBytes);
      for (let i = 0; i < pw; i++) {
        for (let c = 0; c < ch; c++) {
          const v = samples[((y0 + r * dy) * w + x0 + i * dx) * ch + c];
          const k = i * ch + c;
          if (depth === 16) {
            line[2 * k] = v >> 8;
            line[2 * k + 1] = v & 255;
          } else if (depth === 8) line[k] = v;
          else line[(k * depth) >> 3] |= v << (8 - depth - ((k * depth) & 7));
        }
      }
      const f = Math.floor(rnd() * 5);
      raw.push(f);
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? line[i - bpp] : 0,
          b = prior[i],
          c = i >= bpp ? prior[i - bpp] : 0;
        const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][f];
        raw.push((line[i] - pred) & 255);
      }
      prior = line;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  ihdr[12] = spec.interlace ? 1 : 0;
  const parts = [Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr)];
  parts.push(chunk("tEXt", Buffer.from("Comment\0made by the test")));
  if (colorType === 3) {
    const n = spec.paletteSize ?? 1 << depth;
    const pal = new Uint8Array(n * 3);
    for (let i = 0; i < pal.length; i++) pal[i] = Math.floor(rnd() * 256);
    parts.push(chunk("PLTE", pal));
    if (spec.trns) parts.push(chunk("tRNS", new Uint8Array(Math.min(n, 5)).fill(128)));
  } else if (spec.trns && (colorType === 0 || colorType === 2)) {
    parts.push(chunk("tRNS", new Uint8Array(colorType === 0 ? 2 : 6)));
  }
  const z = deflateSync(Buffer.from(raw), { level: spec.level ?? 6 });
  const split = spec.idatSplit ?? z.length;
  for (let o = 0; o < z.length; o += split) parts.push(chunk("IDAT", z.subarray(o, o + split)));
  parts.push(chunk("IEND", new Uint8Array(0)));
  return Buffer.concat(parts);
}

/** pngjs's decode as our layout: planar RGB in [-1, 1] (alpha ignored). */
function pngjsPlanar(bytes: Buffer, depth: number): Float32Array {
  const img = PNG.sync.read(bytes, { skipRescale: depth === 16 });
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  const data = img.data as unknown as ArrayLike<number>;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++)
      out[c * n + i] = depth === 16 ? data[i * 4 + c] / 32767.5 - 1 : data[i * 4 + c] / 127.5 - 1;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Asserts fn throws an AutoencoderKLError whose message matches. */
function expectImageError(fn: () => unknown, pattern: RegExp): AutoencoderKLError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(AutoencoderKLError);
  expect((caught as Error).message).toMatch(pattern);
  return caught as AutoencoderKLError;
}

/** 35×21 crops of the demo photo, encoded by libjpeg-turbo 2.1.5 cjpeg (-quality 85; -sample, -progressive, -restart, -grayscale, -rgb). */
const JPEG_FIXTURES: Record<string, string> = {
  s444:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDAREAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCWa0KnOK85xPUuIilTzU2GWYjxTQE2WA6CmIiLJnknNFxGzdWY" +
    "/u1q0IzprXBPFRYZXZGQ8UrAOVs9aCiJ1G40hHb3MK4NdDRBmXEK1Nhoz7iFeam1wM+YbScUrDWpUeVg5FSNH//Z",
  s422:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDASEAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCWa0KnOKRFKnmvNaPUuWYjxU2WA6CgCIsmeSc0U7iNm6sx/drO" +
    "mtcE8VckBXZGQ8U5Wz1qbDRE6jcaKVxnb3MK4NZlxCtbtEGfcQrzWfMNpOKzaGio8rByKKko/9k=",
  s420:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCWa0KnOKRFKnmujurMf3azprXBPFee4Hp3K0R4qbLAdBUTIyHi" +
    "nK2etKwxpZM8k5opjqNxooCx29zCuDWZcQrRRW7RJn3EK81nzDaTiiioY0VHlYORRRRUDP/Z",
  s440:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDARIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCWa0KnOK6K6sx/drhcD07nOIpU81pTWuCeKjlHcrRHilZGQ8UW" +
    "C5LlgOgpitnrRYY0smeSc0x1G40Csdvcwrg0V0MgzLiFaKTGjPuIV5oqQM+YbScUVLGio8rByKKkaP/Z",
  s411:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDAUEAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCWa0KnOKRFKnmrMR4qbLAdBXnWsz1CIsmeSc0UUUXEbN1Zj+7W" +
    "dNa4J4quyMh4pytnrVSWoIidRuNFFFTco7e5hXBrMuIVrPuIV5rPmG0nFbSRKKjysHIooorIo//Z",
  p420:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAV" +
    "ACMDASIAAhEBAxEB/8QAGQABAAIDAAAAAAAAAAAAAAAAAAIEAQMF/8QAGAEBAQEBAQAAAAAAAAAAAAAAAQAEAgP/2gAMAwEAAhADEAAAAZOjXz" +
    "6dU45HCKu5VPQr1zm1Af/EABkQAAMBAQEAAAAAAAAAAAAAAAABAhARIP/aAAgBAQABBQJzi2oHPikUikM6f//EABQRAQAAAAAAAAAAAAAAAAAA" +
    "ACD/2gAIAQMBAT8BX//EABURAQEAAAAAAAAAAAAAAAAAABEg/9oACAECAQE/ASv/xAAUEAEAAAAAAAAAAAAAAAAAAAAw/9oACAEBAAY/An//xA" +
    "AZEAEBAQEBAQAAAAAAAAAAAAABABEhEGH/2gAIAQEAAT8hzgzx20vl5okMnYYYbmVt/9oADAMBAAIAAwAAABCnI5z8D//EABYRAQEBAAAAAAAA" +
    "AAAAAAAAABARAf/aAAgBAwEBPxCkMP/EABcRAQEBAQAAAAAAAAAAAAAAAAEAEBH/2gAIAQIBAT8QbzEnP//EABkQAQEBAQEBAAAAAAAAAAAAAA" +
    "EAESExEP/aAAgBAQABPxBVuTLs+Wg8J16uwTBeSvLT2LVkfg6IacjMv//Z",
  p444:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAV" +
    "ACMDAREAAhEBAxEB/8QAGQAAAwADAAAAAAAAAAAAAAAAAgMEAAEF/8QAGAEBAQEBAQAAAAAAAAAAAAAAAAECBAP/2gAMAwEAAhADEAAAAS5urI" +
    "ZRgpZtPks2oR3PTMss8Tipf//EABkQAAMBAQEAAAAAAAAAAAAAAAABAhARIP/aAAgBAQABBQJzi2oHPikUikM6f//EABQRAQAAAAAAAAAAAAAA" +
    "AAAAADD/2gAIAQMBAT8Bf//EABURAQEAAAAAAAAAAAAAAAAAABEw/9oACAECAQE/AS//xAAUEAEAAAAAAAAAAAAAAAAAAAAw/9oACAEBAAY/An" +
    "//xAAZEAEBAQEBAQAAAAAAAAAAAAABABEhEGH/2gAIAQEAAT8hzgzx20vl5okMnYYYbmVt/9oADAMBAAIAAwAAABDO5xk57Uf/xAAZEQACAwEA" +
    "AAAAAAAAAAAAAAAAARARITD/2gAIAQMBAT8QvmoWiP/EABcRAAMBAAAAAAAAAAAAAAAAAAABERD/2gAIAQIBAT8QYgso0QmtEJSZ/8QAGRABAQ" +
    "EBAQEAAAAAAAAAAAAAAQARITEQ/9oACAEBAAE/EFW5Muz5aDwnXq7BMF5K8tPYtWR+DohpyMy//9k=",
  p420r:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAV" +
    "ACMDASIAAhEBAxEB/8QAGgABAAMAAwAAAAAAAAAAAAAAAAIDBAEFBv/EABUBAQEAAAAAAAAAAAAAAAAAAAQD/90ABAAB/9oADAMBAAIQAxAAAA" +
    "GTsc50/wD/0Lpx5Mr/0b0Rlf/S9DlJJ//T35yCf//UkDq//8QAFxABAQEBAAAAAAAAAAAAAAAAAAECEf/aAAgBAQABBQK5f//Qf//Rj//Sf//T" +
    "f//U1h//1bl//9Z//9d//9B//9HUf//S1H//09R//9Sv/9Xr/8QAFBEBAAAAAAAAAAAAAAAAAAAAAP/aAAgBAwEBPwF//9B//9F//9J//9N//9" +
    "R//8QAFREBAQAAAAAAAAAAAAAAAAAAABH/2gAIAQIBAT8Bj//Qf//Rf//Sf//Tf//Uf//EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEABj8C" +
    "f//Qf//Rf//Sf//Tf//Uf//Vf//Wf//Xf//Qf//Rf//Sf//Tf//Uf//Vf//EABgQAQEBAQEAAAAAAAAAAAAAAAEAESFh/9oACAEBAAE/Ic7/0A" +
    "y//9Gf/9Lt/9PS/9Tyv//Vv//WRL//1xv/0E7f/9Eb/9Ib/9Mb/9Tm/9VW3//aAAwDAQACAAMAAAAQp//Qy//RO//Sc//T/wD/1AP/xAAWEQEB" +
    "AQAAAAAAAAAAAAAAAAAAEQH/2gAIAQMBAT8Qr//Qf//Rj//Sf//Tx//Uf//EABYRAQEBAAAAAAAAAAAAAAAAAAABEf/aAAgBAgEBPxCv/9DH/9" +
    "F//9Kx/9Ov/9R//8QAGBABAQEBAQAAAAAAAAAAAAAAAQARITH/2gAIAQEAAT8QVbl//9Bl2//RfL//0tB4X//Tdert/9QJ/9XBeX//1leX/9fT" +
    "2//QLV//0cjf/9KH/9Pov//UGnL/1TMv/9k=",
  s422r:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAV" +
    "ACMDASEAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhBy" +
    "JxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT" +
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAA" +
    "AAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRom" +
    "JygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExc" +
    "bHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/90ABAAB/9oADAMBAAIRAxEAPwCWa0KnOKRFKnmvNaPUuf/QuxHipssB0Feaeof/0bxZ" +
    "M8k5orzrnpn/0unurMf3azprXBPFcMkemf/TvMjIeKcrZ6159j1Ef//Utuo3GivOueqf/9X0K5hXBrMuIVrlaPSP/9bfuIV5rPmG0nFcLR6aP/" +
    "/XkeVg5FFeeeqf/9k=",
  grey:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/wAALCAAVACMBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIh" +
    "MUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhI" +
    "WGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AJZr" +
    "Qqc4pEUqeasxHipssB0FRFkzyTmtm6sx/drOmtcE8VXZGQ8U5Wz1qJ1G4129zCuDWZcQrWfcQrzWfMNpOKqPKwciv//Z",
  greyp:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJC" +
    "IeJBweHx7/wgALCAAVACMBAREA/8QAGQAAAwADAAAAAAAAAAAAAAAAAgMEAAEF/9oACAEBAAAAASxhjZOvYdyWedX/xAAZEAADAQEBAAAAAAAA" +
    "AAAAAAAAAQIQESD/2gAIAQEAAQUCc4tqBz4pFIpDOn//xAAUEAEAAAAAAAAAAAAAAAAAAAAw/9oACAEBAAY/An//xAAZEAEBAQEBAQAAAAAAAA" +
    "AAAAABABEhEGH/2gAIAQEAAT8hzgzx20vl5okMnYYYbmVt/9oACAEBAAAAELRd/8QAGRABAQEBAQEAAAAAAAAAAAAAAQARITEQ/9oACAEBAAE/" +
    "EFW5Muz5aDwnXq7BMF5K8tPYtWR+DohpyMy//9k=",
  rgb:
    "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwAFAwQEBAMFBAQEBQUFBgcMCAcHBwcPCwsJDBEPEhIRDxERExYcFxMUGhURERghGBodHR8fHxMXIiQiHi" +
    "QcHh8e/8AAEQgAFQAjA1IRAEcRAEIRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAE" +
    "EQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eH" +
    "l6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAAwDUgBH" +
    "AEIAAD8A6GW1KnpTJbQg5xWPc2BQkgUiKVPNNRSp5FQxxFT81WouRVmM1cgPyipcsBUxYgdBU2WA7VBuj7nmoy655JBqMumecg1sXFoBkEVsXV" +
    "n6LXRXtiOcpWfLbcnjFZ81rgnjFZE9mQThagZWQ1XKFDxVZonQj5aep9aA2etCngZFRso3Go5FG81G6jca7G5hUgmu2uYVwa9Du4E2k4rOmiXN" +
    "ZtxEprKuIE9Kz54lGMVQuIl5rMuIEbINUX4NZ0w2McVlzoEJxVVpW3GqkkrByKovKwYjAr//2Q==",
};

/** djpeg (libjpeg-turbo 2.1.5, default islow IDCT and fancy upsampling) output for some fixtures: raw RGB or grey bytes. */
const DJPEG_PIXELS: Record<string, string> = {
  p420r:
    "kHlpj3hojndnjHVljHVljHVljXZmjndnkntpkntpkntpk3xqlH1rlX5sln9tl4BumIFzmIFzmoN1m4R2nIV3nIV3nYZ4nYZ4nYZ4nod5nod5n4" +
    "h6n4h6n4h6n4h6n4h6nYd5nIZ4m4V3kntrkXpqj3hojndnjndnjndnjndnj3hokXpokXpokntpk3xqlH1rlX5sln9tl4BumIFzmIFzmYJ0m4R2" +
    "nIV3nIV3nYZ4nYZ4nod5n4h6oIl7oIl7oIl7oIl7oIl7oIl7m4V3m4V3mYN1lH1vk3xuknttkXpskHlpkHlpkHlpkHlpkXpqkXpqkntpkntplH" +
    "1rlX5sln9tl4Bul4BymIFzmYJ0m4R2nIV3nIV3nYZ4nYZ4nod5nod5n4h6n4h6oIl7oIl7n4h6n4h6moR2moR2moR2l4Byln9xlX5wk3xukntr" +
    "kntrkXpqkXpqkXpqkXpqkntpk3xqlH1rlX5sln9tl4Bwl4BymIFzmYJ0moN1m4R2nIV3nIV3nIV3nIV3nIV3nYZ4nYZ4nYZ4nYZ4nIV3nIV3m4" +
    "V3nIZ4nIZ4mIJ0mIJ0loBylX9xlH5wknxuknxukXttkn1skn1skn1skn1sk35tlH9ulYBvloFwl4BymIFzmYJ0moN1m4R2nIV3nIV3nIV3m4R2" +
    "m4R2nIV3nIV3nIV3nIV3m4R2m4R2m4V3nIZ4nIZ4nIZ4m4V3moR2mIJ0l4FzlX9xlH5wk31vlH5wk35tk35tk35tlH9ulH9ulYBvlYBvl4Byl4" +
    "BymIFzmoN1m4R2m4R2nIV3nIV3nYZ4nYZ4nYZ4nYZ4nYZ4nYZ4nIV3nIV3moR2moR2moR2n4l8n4l8noh7nIZ5moR3mIJ1l4F0loByloByloBy" +
    "lX9xlX9xlH5wlH5wlX9xlX9xln9xl4BymIFzmoN1m4R2m4R2nIV3nIV3n4h6n4h6n4h6n4h6n4h6nod5nYZ4nYZ4mYN1mIJ0l4Fzoox/oYt+oI" +
    "p9noh7nIZ5moR3mYN2mIJ1l4F0l4FzloBylX9xlX9xlX9xlX9xlX9xln9xl4BymIFzmYJ0moN1m4R2m4R2nIV3n4h6n4h6n4h6n4h6n4h6nod5" +
    "nYZ4nYZ4mYN1mIJ0l4FzpI6DpI6DooyBoIp/noh9nIZ7m4V6moR3m4V4mYN2l4F0l4F0l4F0l4F0loBzlX9ymIB0mIB0mIB0mYF1moJ2m4N3nI" +
    "R4nYV5noZ6noZ6noZ6noZ6nYV5nYV5nYV5nYV5moN1mIFzln9xqJKHp5GGpY+Eo42CoYuAn4l+noh9nYd8nYd8m4V4mYN2mIJ1mYN2mIJ1l4F0" +
    "loBzmIB0mIB0mIB0mYF1mYF1moJ2m4N3nIR4nYV5nYV5nYV5nYV5nYV5nYV5nYV5nYV5m4R2mYJ0l4ByqpaNqZWMp5OKpZGIo4+GoY2EoIyDn4" +
    "uAnYl+nIh9moZ7mYV6mYV6mYV6mIR5mYN4mYF1mYF1mYF1mIB0mYF1mYF1mYF1moJ2nIR4nIR4nIR4nYV5nYV5nYV5noZ6noZ6nIV3moN1mIFz" +
    "rJiPrJiPqpaNqJSLppKJpJCHo4+Goo6FoIyBnop/nIh9m4d8m4d8m4d8moZ7mYV6m4N3moJ2moJ2mYF1mIB0mIB0mIB0mIB0m4N3m4N3m4N3nI" +
    "R4nYV5nYV5noZ6noZ6nYZ4m4R2mYJ0rpqTrZmSrJiRqpaPqJSNppKLpJCHpJCHoo6FoY2En4uCnYmAnYl+nYl+m4d8moZ7nYV5nIR4m4N3moJ2" +
    "mYF1mIB0mIB0mIB0moJ2moJ2m4N3m4N3nIR4nYV5noZ6noZ6nYZ4m4R2mYJ0sJyVr5uUrpqTrJiRqpaPqJSNp5OKppKJpZGIo4+GoY2EoIyDn4" +
    "uAn4uAnYl+nIh9n4d7noZ6nYV5m4N3moJ2mYF1mYF1mYF1mYF1moJ2moJ2m4N3nIR4nIR4nYV5nYV5nYZ4m4R2moN1s5+Ysp6XsZ2Wr5uUrZmS" +
    "q5eQqZWOqZWOqJSLppKJpJCHoo6Foo6FoY2EoIyDnop/oYl9oIh8n4d7nYV5nIR4m4N3m4N3moJ2mYF1moJ2moJ2m4N3m4N3nIR4nIR4nIR4nY" +
    "Z4m4R2mYJ0taGataGas5+YsZ2Wr5uUrZmSrJiRq5eQqpaNqJSLppKJpJCHo4+Go4+GoY2EoIyDoYuAoIp/oIh+nYd8nYV7nIR4nIR6nIR4moJ4" +
    "moJ2moJ2moJ2m4N3m4N3nIR4nIR4nYV5m4R2mYJ0uKOetqGctaCbtJ+as5+YsZ2Wr5uUrZmSq5eQqpaPqZWMqJSLppKJpZGIo4+Go4+Goo6FoI" +
    "yDoImBnYmAn4iAnYd8nIV9moR5m4R8moR5mYN4mYN4m4N5m4N5m4N5moJ2m4N3moJ2mYF1uaSfuKOetqGctaCbtKCZs5+YsJyVrpqTrJiRrJiR" +
    "q5eOqZWMp5OKppKJpZGIpJCHo4+Ioo6HoIyFn4uEnoqBnYmAnYZ+m4R8nIV9m4R8mYN4mYN4m4N5m4N5moJ4mYF3moJ2mYF1l39zu6ahuqWguK" +
    "Oet6KdtqKbtaGasp6XsZ2Wr5uUrpqTrZmSq5eQqpaNqJSLp5OKppKJpZGKpJCJoo6HoY2GoIyDn4uCn4iAnod/nod/nIV9moR5mYN4moJ4moJ4" +
    "mYF3mIB2mYF1l39zlX1xvqmkvKeiu6ahuqWguaWet6OctaGas5+YsZ2WsJyVr5uUrpqTrJiPqpaNqZWMqZWMqJSNppKLpJCJo4+Io4+GoY2EoY" +
    "qCoImBn4iAnYZ+m4V6moR5m4N5moJ4mYF3l391l39zlX1xk3tvv6qlvqmkvKeiu6ahuqWguaSftqKbtKCZs5+Ysp6XsZ2Wr5uUrpqTrJiRq5eO" +
    "qpaNqZWOqJSNppKLpZGKpJCHo4+Go4yEoouDoImBnod/nIZ7moR5m4N5moJ4mIB2l391l39zlHxwknpu",
  s422r:
    "kHlrj3hqjndpjHVnjHVljHVljXZmjndnkntrkntrkntpk3xqlH1rlX5sln9tl4BwmIFxmIFzmoN1m4R2nIV3nIV3nYZ4nYZ4nYZ4nod5nod5n4" +
    "h6n4h6n4h6n4h6n4h6nYd6nIZ5m4V4knttkXpsj3hqjndpjndnjndnjndnj3hokXpqkXpqkntrk3xslH1rlX5sln9tl4BwmIFxmIFzmYJ0m4R2" +
    "nIV3nIV3nYZ4nYZ4nod5n4h6oIl7oIl7oIl7oIl7oIl7oIl7m4V4m4V4mYN2lH1vk3xuknttkXpskHlrkHlrkHlpkHlpkXpqkXpqkntrkntrlH" +
    "1tlX5uln9tl4Bwl4BwmIFzmYJ0m4R2nIV3nIV3nYZ4nYZ4nod5nod5n4h6n4h6oIl7oIl7n4h6n4h6moR3moR3moR3l4Byln9xlX5wk3xukntt" +
    "knttkXpskXpskXpqkXpqkntrk3xslH1tlX5uln9vl4Bwl4BymIFzmYJ0moN1m4R2nIV3nIV3nIV3nIV3nIV3nYZ4nYZ4nYZ4nYZ4nIV3nIV3m4" +
    "V4nIZ5nIZ5mIJ1mIJ1loBzlX9ylH5wknxuknxukXttknxuknxukn1skn1sk35tlH9ulYBvloFwl4BymIFzmYJ0moN1m4R2nIV3nIV3nIV3m4R2" +
    "m4R2nIV3nIV3nIV3nIV3m4R2m4R2m4V3nIZ4nIZ4nIZ5m4V4moR3mIJ1l4F0lX9ylH5wk31vlH5wk31vk31vk31vlH5wlH5wlYBvlYBvl4Byl4" +
    "BymIFzmoN1m4R2m4R2nIV3nIV3nYZ4nYZ4nYZ4nYZ4nYZ4nYZ4nIV3nIV3moR2moR2moR2n4l8n4l8noh7nIZ5moR3mIJ1l4F0loBzloByloBy" +
    "lX9xlX9xlH5wlH5wlX9xlX9xln9xl4BymIFzmoN1m4R2m4R2nIV3nIV3n4h6n4h6n4h6n4h6n4h6nod5nYZ4nYZ4mYN1mIJ0l4Fzoox/oYt+oI" +
    "p9noh7nIZ5moR3mYN2mIJ1l4Fzl4FzloBylX9xlX9xlX9xlX9xlX9xln9xl4BymIFzmYJ0moN1m4R2m4R2nIV3n4h6n4h6n4h6n4h6n4h6nod5" +
    "nYZ4nYZ4mYN1mIJ0l4FzpI2FpI2FoouDoImBnoh9nIZ7m4V6moR5m4V4mYN2l4Fzl4Fzl4Fzl4FzloBylX9xl4Fzl4Fzl4FzmIJ0mYN1moR2m4" +
    "V3nIZ4nod5nod5nod5nod5nYZ4nYZ4nYZ4nYZ4moJ2mIB0ln5yqJGJp5CIpY6Go4yEoYuAn4l+noh9nYd8nYd6m4V4mYN2mIJ1mYN1mIJ0l4Fz" +
    "loByl4Fzl4Fzl4FzmIJ0mIJ0mYN1moR2m4V3nYZ4nYZ4nYZ4nYZ4nYZ4nYZ4nYZ4nYZ4m4N3mYF1l39zrJWNq5SMqZKKp5CIpY6Go4yEooyBoY" +
    "uAn4l8noh7nIZ5m4V4m4V3m4V3moR2mYN1mIJ1mIJ1mIJ1l4F0mIJ1mIJ1mIJ1mYN2nIR4nIR4nIR4nYV5nYV5nYV5noZ6noZ6nIR4moJ2mIB0" +
    "rpeRrpeRrJWPqpONqJGJpo+HpY+EpI6DooyBoIp/noh7nYd6nYd6nYd6nIZ4m4V3moR3mYN2mYN2mIJ1l4F0l4F0l4F0l4F0m4N3m4N3m4N3nI" +
    "R4nYV5nYV5noZ6noZ6nYV5m4N3mYF1sJmTr5iSrpeRrJWPqpOLqJGJpo+Hpo+HpI6Do42CoYt+n4l8n4l8n4l8nYd6nIZ5nIZ5m4V4moR3mYN2" +
    "mIJ1l4F0l4F0l4F0moJ2moJ2m4N3m4N3nIR4nYV5noZ6noZ6nYZ4m4R2mYJ0spuVsZqUsJmTrpeRrJWPqpONqZKKqJGJp5GGpY+Eo42CooyBoY" +
    "t+oYt+n4l8noh7noh9nYd8nIZ7moR5mYN4mIJ3mIJ3mIJ3mYF3moJ4moJ4m4N5nIR6nIR6nYV7nYV7nYZ4m4R2moN1tZ2ZtJyYs5yWsZqUr5iS" +
    "rZaQq5SMq5SMqpOLqJGJppCFpI6DpI6Do42Coox/oIp9oIp/n4l+noh9nIZ7m4V6moR5moR5mYN4mYF3moJ4moJ4m4N5m4N5nIR6nIR6nIR6nY" +
    "Z4m4R2mYJ0t5+bt5+btZ2Zs5uXsZqUr5iSrpePrZaOrJWNqpOLqJKHppCFpY+EpY+Eo42Aoox/oYuAoIp/n4l+nYd8nIZ7m4V6m4V6m4V6moJ4" +
    "moJ4moJ4moJ4m4N5m4N5nIR6nIR6nYZ4m4R2mYJ0uKOetqGctaCbtJ+as5+YsZ2Wr5uUrZmSq5eQqpaPqZWMqJSLppKJpZGIo4+Go4+Goo6DoI" +
    "yBnop/nYl+nYl+m4d8nIZ7moR5m4V4moR3mYN2mYN2m4N3m4N3m4N3moJ2m4N3moJ2mYF1uaSfuKOetqGctaCbtKCZs5+YsJyVrpqTrJiRrJiR" +
    "q5eQqZWOp5OKppKJpZGIpJCHo4+Eoo6DoIyBn4uAnop/nYl+nYd8m4V6nIZ5m4V4mYN2mYN2m4N3m4N3moJ2mYF1moJ2mYF1l39zu6ahuqWguK" +
    "Oet6KdtqGctaCbsp6XsZ2Wr5uUrpqTrZmSq5eQqpaPqJSNp5OKppKJpZGIpJCHoo6DoY2CoIyBn4uAn4l+noh9noh9nIZ7moR3mYN2moJ2moJ2" +
    "mYF1mIB0mYF1l39zlX1xvqmkvKeiu6ahuqWguaSft6KdtaCbs56ZsZ2WsJyVr5uUrpqTrJiRqpaPqZWOqZWOqJSLppKJpJCHo4+Go4+GoY2EoY" +
    "uAoIp/n4l+nYd8m4V6moR5m4N3moJ2mYF1l39zl39zlX1xk3tvv6qnvqmmvKeku6ajuqWguaSftqGctJ+as56Zsp2YsZ2Wr5uUrpqTrJiRq5eQ" +
    "qpaPqZWMqJSLppKJpZGIpJCHo4+Go4yEoouDoIp/noh9nIZ7moR5m4N5moJ4mIB2l391l39zlHxwknpu",
  grey:
    "fn18enp6e3yAgICBgoOEhYaGiImKiouLi4yMjY2NjY2Mi4qAf318fHx8fX9/gIGCg4SFhoaHiYqKi4uMjY6Ojo6OjoqKiIKBgH9+fn5+f3+AgI" +
    "KDhIWFhoeJioqLi4yMjY2Ojo2NiYmJhYSDgYCAf39/f4CBgoOEhYWGh4iJioqKioqLi4uLioqKi4uHh4WEg4GBgIGBgYGCg4SFhYaHiImKioqJ" +
    "iYqKioqJiYqLi4uKiYeGhIOCg4KCgoODhISFhYaIiYmKiouLi4uLi4qKiYmJjo6Ni4mHhoWFhYSEg4OEhISFhoiJiYqKjY2NjY2Mi4uIh4aRkI" +
    "+Ni4mIh4aGhYSEhISEhIWGh4iJiYqNjY2NjYyLi4iHhpOTkY+Ni4qJioiGhoaGhYSGhoaHiImKi4yMjIyLi4uLiIaEl5aUkpCOjYyMioiHiIeG" +
    "hYaGhoeHiImKi4uLi4uLi4uJh4WbmpiWlJKRkI6Ni4qKiomIh4eHhoeHh4iKioqLi4uMjIqIhp2dm5mXlZSTkY+NjIyMi4qJiIiHhoaGhomJiY" +
    "qLi4yMi4mHn56dm5mXlZWTkpCOjo6Mi4uKiYiHhoaGiIiJiYqLjIyLiYehoJ+dm5mYl5aUkpGQkI6NjYyLiYiHh4eHiIiJioqLi4uJiKSjoqCe" +
    "nJqamZeVk5OSkY+Pjo2LiomJiIeIiImJioqKi4mHpqakoqCenZybmZeVlJSSkZCPjoyLioqKiIiIiImJioqLiYepp6alpKKgnpybmpmXlpSUk5" +
    "GPjo6Mi4mKiYiIiYmJiImIh6qpp6alpKGfnZ2cmpiXlpWUk5GQj46MiouKiIiJiYiHiIeFrKupqKemo6Kgn56cm5mYl5aVk5KRkI6NjYuJiIiI" +
    "h4aHhYOvrayrqqimpKKhoJ+dm5qamZeVlJSSkI+OjIqJiYiHhYWDgbCvrayrqqelpKOioJ+dnJuamZeWlZSSkY+Ni4mJiIaFhYKA",
};

const fixture = (name: string) => Buffer.from(JPEG_FIXTURES[name], "base64");
const FIXTURE_W = 35,
  FIXTURE_H = 21;

/** Planar [-1, 1] floats → 8-bit levels, for comparisons in pixel units. */
const levels = (x: ArrayLike<number>) => Array.from(x, (v) => Math.round((v + 1) * 127.5));

function compareLevels(a: number[], b: number[]) {
  expect(a.length).toBe(b.length);
  let max = 0,
    sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe("PNG decoding matches pngjs", () => {
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  const sizes = [
    [1, 1],
    [13, 7],
    [37, 19],
  ];
  for (const [ct, ds] of Object.entries(depths)) {
    for (const depth of ds) {
      for (const interlace of [false, true]) {
        it(`color type ${ct}, ${depth}-bit${interlace ? ", Adam7" : ""}`, () => {
          sizes.forEach(([w, h], k) => {
            const bytes = makePng({
              width: w,
              height: h,
              colorType: +ct,
              depth,
              interlace,
              seed: 7 * k + depth,
              trns: k === 1,
            });
            const t = readImage(bytes);
            expect(t.shape).toEqual([1, 3, h, w]);
            expect(maxAbsDiff(t.data, pngjsPlanar(bytes, depth))).toBeLessThan(1e-6);
          });
        });
      }
    }
  }

  it("stored (uncompressed) deflate blocks, IDAT split into many chunks, short palettes", () => {
    for (const [level, split] of [
      [0, 5],
      [9, 1],
      [1, 64],
    ]) {
      const bytes = makePng({ width: 29, height: 11, colorType: 2, depth: 8, level, idatSplit: split, seed: level });
      expect(maxAbsDiff(readImage(bytes).data, pngjsPlanar(bytes, 8))).toBeLessThan(1e-6);
    }
    const pal = makePng({ width: 9, height: 9, colorType: 3, depth: 4, paletteSize: 5, trns: true });
    expect(maxAbsDiff(readImage(pal).data, pngjsPlanar(pal, 8))).toBeLessThan(1e-6);
  });

  it("images written by pngjs (zlib's dynamic Huffman blocks), RGBA and 16-bit", () => {
    const rnd = mulberry32(3);
    const w = 50,
      h = 30;
    const png = new PNG({ width: w, height: h });
    for (let i = 0; i < png.data.length; i++) png.data[i] = (i >> 5) % 2 ? Math.floor(rnd() * 256) : (i * 7) & 255;
    for (const [colorType, bitDepth] of [
      [6, 8],
      [2, 8],
      [0, 8],
      [4, 8],
    ] as const) {
      const bytes = PNG.sync.write(png, { colorType, bitDepth });
      expect(maxAbsDiff(readImage(bytes).data, pngjsPlanar(bytes, 8))).toBeLessThan(1e-6);
    }
  });

  it("the bundled photo decodes exactly as pngjs decodes it", () => {
    const bytes = readFileSync(new URL("../assets/chelsea.png", import.meta.url));
    const t = readImage(bytes);
    expect(t.shape).toEqual([1, 3, 296, 448]);
    expect(maxAbsDiff(t.data, pngjsPlanar(bytes, 8))).toBeLessThan(1e-6);
  });
});

describe("writePng", () => {
  it("round-trips: pixels = round(clamp((y + 1)·127.5, 0, 255)), read back by pngjs and by readImage", () => {
    const rnd = mulberry32(11);
    const [h, w] = [23, 41];
    const data = new Float32Array(3 * h * w).map(() => rnd() * 2.4 - 1.2);
    data[5] = NaN;
    data[6] = -0.0039215;
    const t = new Tensor(data, [1, 3, h, w]);
    const bytes = writePng(t);
    const ref = PNG.sync.read(Buffer.from(bytes));
    expect([ref.width, ref.height]).toEqual([w, h]);
    const n = h * w;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        const v = data[c * n + i];
        const want = Number.isNaN(v) ? 0 : Math.round(Math.min(255, Math.max(0, (v + 1) * 127.5)));
        expect(ref.data[i * 4 + c]).toBe(want);
      }
    }
    const back = readImage(bytes);
    for (let i = 0; i < 3 * n; i++)
      expect(back.data[i]).toBeCloseTo(ref.data[(i % n) * 4 + Math.floor(i / n)] / 127.5 - 1, 6);
  });

  it("compresses repetitive images (LZ77 matches) and stays exact", () => {
    const [h, w] = [150, 200];
    const data = new Float32Array(3 * h * w);
    for (let i = 0; i < data.length; i++) data[i] = ((Math.floor(i / 7) % 13) - 6) / 6;
    const bytes = writePng(new Tensor(data, [1, 3, h, w]));
    expect(bytes.length).toBeLessThan((3 * h * w) / 10);
    const back = readImage(bytes);
    expect(
      maxAbsDiff(
        back.data,
        data.map((v) => Math.round((v + 1) * 127.5) / 127.5 - 1),
      ),
    ).toBeLessThan(1e-6);
    // zlib agrees the IDAT stream is valid and its checksum right.
    const idatLen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(33);
    expect(inflateSync(bytes.subarray(41, 41 + idatLen)).length).toBe(h * (3 * w + 1));
  });

  it("writes [3, H, W] and greyscale [1, 1, H, W]; rejects other shapes with AutoencoderKLError", () => {
    const grey = writePng(new Tensor(new Float32Array(6).fill(0.5), [1, 1, 2, 3]));
    const g = PNG.sync.read(Buffer.from(grey));
    expect([g.width, g.height, g.data[0], g.data[1], g.data[2]]).toEqual([3, 2, 191, 191, 191]);
    expect(readImage(writePng(new Tensor(new Float32Array(12), [3, 2, 2]))).shape).toEqual([1, 3, 2, 2]);
    expectImageError(() => writePng(new Tensor(new Float32Array(8), [2, 1, 2, 2])), /shape/);
    expectImageError(() => writePng(new Tensor(new Float32Array(8), [1, 2, 2, 2])), /shape/);
    expectImageError(() => writePng({ shape: [1, 3, 1, 1], data: new Float32Array(3) } as unknown as Tensor), /Tensor/);
  });
});

describe("JPEG decoding", () => {
  for (const name of Object.keys(JPEG_FIXTURES)) {
    it(`${name}: close to jpeg-js`, () => {
      const bytes = fixture(name);
      const t = readImage(bytes);
      expect(t.shape).toEqual([1, 3, FIXTURE_H, FIXTURE_W]);
      // jpeg-js replicates chroma samples and uses another IDCT; we filter chroma as libjpeg does, so
      // pixels differ by a few levels at colour edges.
      const ref = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: false,
        colorTransform: name === "rgb" ? false : undefined,
      });
      const n = FIXTURE_W * FIXTURE_H;
      const refLevels: number[] = new Array(3 * n);
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) refLevels[c * n + i] = ref.data[i * 3 + c];
      const { max, mean } = compareLevels(levels(t.data), refLevels);
      expect(max).toBeLessThanOrEqual(4);
      expect(mean).toBeLessThan(0.8);
    });
  }

  for (const name of Object.keys(DJPEG_PIXELS)) {
    it(`${name}: matches libjpeg-turbo's djpeg within ±2 levels`, () => {
      const t = readImage(fixture(name));
      const px = Buffer.from(DJPEG_PIXELS[name], "base64");
      const n = FIXTURE_W * FIXTURE_H;
      const grey = px.length === n;
      const ref: number[] = new Array(3 * n);
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) ref[c * n + i] = grey ? px[i] : px[i * 3 + c];
      const { max, mean } = compareLevels(levels(t.data), ref);
      expect(max).toBeLessThanOrEqual(2);
      expect(mean).toBeLessThan(0.05);
    });
  }

  it("baseline files written by jpeg-js's encoder, odd sizes", () => {
    const rnd = mulberry32(5);
    for (const [w, h] of [
      [1, 1],
      [17, 9],
      [64, 40],
    ]) {
      const rgba = new Uint8Array(w * h * 4);
      for (let i = 0; i < rgba.length; i++) rgba[i] = Math.floor(128 + 100 * Math.sin(i / 50) + 20 * rnd());
      const bytes = jpeg.encode({ data: rgba, width: w, height: h }, 90).data;
      const ref = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
      const t = readImage(bytes);
      expect(t.shape).toEqual([1, 3, h, w]);
      const n = w * h;
      const refLevels: number[] = new Array(3 * n);
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) refLevels[c * n + i] = ref.data[i * 3 + c];
      expect(compareLevels(levels(t.data), refLevels).max).toBeLessThanOrEqual(3);
    }
  });

  it("rejects arithmetic coding, 12-bit samples and CMYK by name", () => {
    const sofAt = (b: Buffer) => b.findIndex((v, i) => v === 0xff && b[i + 1] === 0xc0);
    const arith = Buffer.from(fixture("s420"));
    arith[sofAt(arith) + 1] = 0xc9;
    expectImageError(
      () => readImage(arith, { name: "a.jpg" }),
      /^a\.jpg: JPEG uses arithmetic-coded sequential coding/,
    );
    const deep = Buffer.from(fixture("s420"));
    deep[sofAt(deep) + 4] = 12;
    expectImageError(() => readImage(deep), /12-bit/);
    const cmyk = Buffer.from(fixture("s420"));
    cmyk[sofAt(cmyk) + 9] = 4;
    expectImageError(() => readImage(cmyk), /4 components/);
  });
});

describe("pixel limit (decompression bombs)", () => {
  it("rejects a huge PNG from its header, before reading any pixel data", () => {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(100_000, 0);
    ihdr.writeUInt32BE(100_000, 4);
    ihdr[8] = 8;
    ihdr[9] = 2;
    // No IDAT and no IEND: only a header check can produce this error.
    const bomb = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr)]);
    const e = expectImageError(
      () => readImage(bomb, { name: "bomb.png" }),
      /bomb\.png: PNG is 100000×100000 = 10000000000 pixels, over the limit of 67108864/,
    );
    expect(e.source).toBe("bomb.png");
  });

  it("rejects a huge JPEG from its frame header", () => {
    const b = Buffer.from(fixture("s444"));
    const sof = b.findIndex((v, i) => v === 0xff && b[i + 1] === 0xc0);
    b.writeUInt16BE(60000, sof + 5);
    b.writeUInt16BE(60000, sof + 7);
    expectImageError(() => readImage(b), /JPEG is 60000×60000 = 3600000000 pixels, over the limit/);
  });

  it("maxPixels lowers or raises the limit", () => {
    const png = makePng({ width: 20, height: 20, colorType: 2, depth: 8 });
    expectImageError(() => readImage(png, { maxPixels: 399 }), /over the limit of 399/);
    expect(readImage(png, { maxPixels: 400 }).shape).toEqual([1, 3, 20, 20]);
    expectImageError(() => readImage(fixture("grey"), { maxPixels: 734 }), /over the limit of 734/);
    expect(readImage(fixture("grey"), { maxPixels: 735 }).shape).toEqual([1, 3, 21, 35]);
    expectImageError(() => readImage(png, { maxPixels: 0 }), /maxPixels/);
  });
});

describe("corrupt and foreign files throw AutoencoderKLError only", () => {
  /** Every outcome must be a decoded image or an AutoencoderKLError; anything else fails the test. */
  function survives(bytes: Uint8Array): "ok" | "error" {
    try {
      readImage(bytes, { name: "fuzz" });
      return "ok";
    } catch (e) {
      if (!(e instanceof AutoencoderKLError)) throw new Error(`non-AutoencoderKLError: ${String(e)}`, { cause: e });
      expect(e.message.startsWith("fuzz: ")).toBe(true);
      return "error";
    }
  }

  it("not an image, empty, wrong input type", () => {
    expectImageError(
      () => readImage(new TextEncoder().encode("hello, world"), { name: "notes.txt" }),
      /^notes\.txt: is not a PNG or JPEG image/,
    );
    expectImageError(() => readImage(new Uint8Array(0)), /is empty/);
    expectImageError(() => readImage("x.png" as unknown as Uint8Array), /Uint8Array/);
  });

  it("PNG: every truncation, CRC errors, bad headers", () => {
    const bytes = makePng({ width: 16, height: 9, colorType: 6, depth: 8, interlace: true });
    for (let n = 0; n < bytes.length; n += 3) expect(survives(bytes.subarray(0, n))).toBe("error");
    const bad = Buffer.from(bytes);
    bad[bad.length - 20] ^= 1;
    expectImageError(() => readImage(bad), /fails its CRC check/);
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(4, 0);
    ihdr.writeUInt32BE(4, 4);
    ihdr[8] = 3; // 3-bit is no valid depth
    ihdr[9] = 0;
    expectImageError(
      () =>
        readImage(
          Buffer.concat([
            Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
            chunk("IHDR", ihdr),
            chunk("IEND", new Uint8Array(0)),
          ]),
        ),
      /bit depths 1, 2, 4, 8, 16, got 3/,
    );
  });

  it("PNG: bit flips inside the compressed data (with valid CRCs) never escape as other errors", () => {
    const rnd = mulberry32(99);
    const base = makePng({ width: 24, height: 10, colorType: 2, depth: 8, level: 9, seed: 4 });
    const idatAt = base.indexOf(Buffer.from("IDAT")) - 4;
    const len = base.readUInt32BE(idatAt);
    let errors = 0;
    for (let k = 0; k < 300; k++) {
      const b = Buffer.from(base);
      const flips = 1 + Math.floor(rnd() * 3);
      for (let f = 0; f < flips; f++) b[idatAt + 8 + Math.floor(rnd() * len)] ^= 1 << Math.floor(rnd() * 8);
      b.writeUInt32BE(zcrc32(b.subarray(idatAt + 4, idatAt + 8 + len)) >>> 0, idatAt + 8 + len);
      if (survives(b) === "error") errors++;
    }
    expect(errors).toBeGreaterThan(250); // the Adler-32 check catches what the Huffman decoding does not
  });

  it("JPEG: truncations and random byte damage never escape as other errors", () => {
    const rnd = mulberry32(42);
    for (const name of ["s420", "p420r", "greyp", "s422r"]) {
      const base = fixture(name);
      for (let n = 0; n < base.length - 2; n += 5) survives(base.subarray(0, n));
      for (let k = 0; k < 150; k++) {
        const b = Buffer.from(base);
        for (let f = 0; f < 1 + Math.floor(rnd() * 4); f++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        survives(b);
      }
    }
    expect(survives(fixture("s420").subarray(0, 300))).toBe("error");
  });
});

describe("sizes that are not multiples of 8", () => {
  it("padToMultiple replicates edge pixels; cropTo undoes it", () => {
    const [h, w] = [7, 13];
    const data = new Float32Array(2 * h * w).map((_, i) => i);
    const x = new Tensor(data, [1, 2, h, w]);
    const p = padToMultiple(x, 8);
    expect(p.shape).toEqual([1, 2, 8, 16]);
    const at = (t: Tensor, c: number, y: number, xx: number) => t.data[(c * t.shape[2] + y) * t.shape[3] + xx];
    expect(at(p, 1, 7, 15)).toBe(at(x, 1, 6, 12)); // corner
    expect(at(p, 0, 3, 14)).toBe(at(x, 0, 3, 12)); // right edge
    expect(at(p, 0, 7, 4)).toBe(at(x, 0, 6, 4)); // bottom edge
    expect(Array.from(cropTo(p, h, w).data)).toEqual(Array.from(data));
    expect(padToMultiple(p, 8)).toBe(p);
  });
});

describe("decodeImage", () => {
  it("reports the format and dimensions", () => {
    const png = decodeImage(makePng({ width: 3, height: 2, colorType: 0, depth: 8 }));
    expect([png.format, png.width, png.height]).toEqual(["png", 3, 2]);
    const jpg = decodeImage(fixture("grey"));
    expect([jpg.format, jpg.width, jpg.height]).toEqual(["jpeg", 35, 21]);
  });
});
