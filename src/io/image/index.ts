// Image files ↔ tensors. Our own codecs (no dependencies, no Node built-ins), so the same code runs in
// Node, browsers and workers. PNG: all color types and bit depths, interlaced or not; JPEG: baseline and
// progressive, greyscale or colour. Alpha is dropped (not composited); EXIF orientation is not applied.
import { AutoencoderKLError } from "../../errors.js";
import { Tensor } from "../../tensor/tensor.js";
import { DEFAULT_MAX_PIXELS, type DecodedImage, imageError, type ReadImageOptions } from "./common.js";
import { decodeJpeg, isJpeg } from "./jpeg.js";
import { decodePng, encodePng, isPng } from "./png.js";

export { cropTo, padToMultiple } from "./pad.js";
export type { DecodedImage, ReadImageOptions };
export { DEFAULT_MAX_PIXELS };

export type ImageFormat = "png" | "jpeg";

/** Which decoder a file needs, from its first bytes; null when it is neither PNG nor JPEG. */
export function detectImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (isPng(bytes)) return "png";
  if (isJpeg(bytes)) return "jpeg";
  return null;
}

function toBytes(input: unknown, name: string): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new AutoencoderKLError(name, "image bytes must be a Uint8Array, ArrayBuffer or typed array view");
}

/** Decodes a PNG or JPEG to planar RGB in [-1, 1] (8-bit: pixel / 127.5 − 1). */
export function decodeImage(
  bytes: Uint8Array | ArrayBuffer,
  options: ReadImageOptions = {},
): DecodedImage & { format: ImageFormat } {
  const name = options.name ?? "image";
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (typeof maxPixels !== "number" || !(maxPixels >= 1)) {
    throw new AutoencoderKLError("options.maxPixels", `must be a number ≥ 1, got ${String(maxPixels)}`);
  }
  const b = toBytes(bytes, name);
  const format = detectImageFormat(b);
  if (format === "png") return { ...decodePng(b, name, maxPixels), format };
  if (format === "jpeg") return { ...decodeJpeg(b, name, maxPixels), format };
  throw imageError(
    name,
    b.length === 0 ? "is empty, not an image" : "is not a PNG or JPEG image (unrecognised signature)",
  );
}

/**
 * Reads a PNG or JPEG into a Tensor [1, 3, H, W] with values in [-1, 1], as diffusers' image processor
 * makes them (pixel / 127.5 − 1). Alpha channels and PNG transparency are dropped. Throws
 * AutoencoderKLError naming `options.name` for corrupt, unsupported or over-limit files.
 */
export function readImage(bytes: Uint8Array | ArrayBuffer, options: ReadImageOptions = {}): Tensor {
  const img = decodeImage(bytes, options);
  return new Tensor(img.data, [1, 3, img.height, img.width]);
}

/**
 * Tensor [1, C, H, W] or [C, H, W] (C = 3 for RGB or 1 for grey) with values in [-1, 1] → 8-bit pixels,
 * interleaved: round(clamp((y + 1) · 127.5, 0, 255)); NaN becomes 0.
 */
export function tensorToPixels(
  tensor: Tensor,
  what = "writePng: tensor",
): { pixels: Uint8Array; width: number; height: number; channels: 1 | 3 } {
  if (!(tensor instanceof Tensor)) throw new AutoencoderKLError(what, "must be a Tensor");
  const s = tensor.shape;
  const dims = s.length === 4 ? s.slice(1) : s.length === 3 ? s : null;
  if (!dims || (s.length === 4 && s[0] !== 1) || (dims[0] !== 3 && dims[0] !== 1) || dims[1] < 1 || dims[2] < 1) {
    throw new AutoencoderKLError(
      what,
      `must have shape [1, 3, H, W], [3, H, W] or with 1 channel for grey, got [${s.join(", ")}]`,
    );
  }
  const [c, h, w] = dims as [1 | 3, number, number];
  const plane = h * w;
  const px = new Uint8Array(plane * c);
  const src = tensor.data;
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.round((src[ch * plane + i] + 1) * 127.5);
      px[i * c + ch] = v > 255 ? 255 : v >= 0 ? v : 0;
    }
  }
  return { pixels: px, width: w, height: h, channels: c };
}

/** Encodes a Tensor [1, 3, H, W] (or [3, H, W]; 1 channel for grey) in [-1, 1] as an 8-bit PNG. */
export function writePng(tensor: Tensor): Uint8Array {
  const { pixels, width, height, channels } = tensorToPixels(tensor);
  return encodePng(pixels, width, height, channels);
}

/** Encodes interleaved 8-bit RGB (or grey) pixels as a PNG. */
export function encodePngPixels(pixels: Uint8Array, width: number, height: number, channels: 1 | 3 = 3): Uint8Array {
  if (
    !Number.isInteger(width) ||
    !Number.isInteger(height) ||
    width < 1 ||
    height < 1 ||
    pixels.length !== width * height * channels
  ) {
    throw new AutoencoderKLError("encodePngPixels", `needs ${width}×${height}×${channels} bytes, got ${pixels.length}`);
  }
  return encodePng(pixels, width, height, channels);
}
