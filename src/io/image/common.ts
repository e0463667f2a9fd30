import { AutoencoderKLError } from "../../errors.js";

/** Default pixel limit (64 Mpx) against decompression bombs: a few bytes of header must not make us allocate gigabytes. */
export const DEFAULT_MAX_PIXELS = 2 ** 26;

export interface ReadImageOptions {
  /** Names the image in error messages (a file path or URL). Default "image". */
  name?: string;
  /**
   * Largest width × height accepted, checked from the header before any pixel memory is allocated.
   * Default 2^26 (64 Mpx).
   */
  maxPixels?: number;
}

/** Decoded pixels as the model wants them: planar RGB float32 in [-1, 1]. */
export interface DecodedImage {
  width: number;
  height: number;
  /** 3 planes of width × height, R then G then B. */
  data: Float32Array;
}

export function imageError(name: string, rule: string, cause?: unknown): AutoencoderKLError {
  return new AutoencoderKLError(name, rule, cause === undefined ? undefined : { cause });
}

/** Rejects images over the pixel limit; called with the header's dimensions before allocating. */
export function checkPixelLimit(name: string, format: string, width: number, height: number, maxPixels: number): void {
  if (width < 1 || height < 1)
    throw imageError(name, `${format} header says ${width}×${height}: both sides must be at least 1`);
  if (width * height > maxPixels) {
    throw imageError(
      name,
      `${format} is ${width}×${height} = ${width * height} pixels, over the limit of ${maxPixels} (a guard against decompression bombs; raise it with the maxPixels option)`,
    );
  }
}
