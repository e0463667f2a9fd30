import type { Tensor } from "../index.js";
import { tensorToPixels } from "../io/image/index.js";

/** PSNR (dB) over all RGB values of two 8-bit images: 10·log10(255² / MSE); Infinity when identical. */
export function psnr8(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    se += d * d;
  }
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/** The 8-bit pixels the project's PSNR is defined on: round(clamp((y + 1)·127.5, 0, 255)). */
export function pixels8(t: Tensor): { pixels: Uint8Array; width: number; height: number } {
  const { pixels, width, height } = tensorToPixels(t, "image");
  return { pixels, width, height };
}

/** Heat-map colour for an error of e levels: black → red → yellow → white, saturating at `full`. */
function heat(e: number, full: number): [number, number, number] {
  const t = Math.min(1, e / full) * 3;
  if (t < 1) return [Math.round(255 * t), 0, 0];
  if (t < 2) return [255, Math.round(255 * (t - 1)), 0];
  return [255, 255, Math.round(255 * (t - 2))];
}

/** Error, in 8-bit levels, that saturates the heat map: fixed so pictures of different runs compare. */
export const HEAT_FULL_SCALE = 64;

/**
 * One RGB picture: original | reconstruction | error heat map (mean absolute error over RGB per pixel,
 * 0 black, ≥ 64 levels white), separated by 4-pixel grey gutters.
 */
export function sideBySide(
  orig: Uint8Array,
  recon: Uint8Array,
  width: number,
  height: number,
): { pixels: Uint8Array; width: number; height: number } {
  const gap = 4;
  const W = width * 3 + gap * 2;
  const out = new Uint8Array(W * height * 3).fill(64);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 3;
      const a = (y * W + x) * 3,
        b = (y * W + width + gap + x) * 3,
        c = (y * W + 2 * (width + gap) + x) * 3;
      let err = 0;
      for (let k = 0; k < 3; k++) {
        out[a + k] = orig[s + k];
        out[b + k] = recon[s + k];
        err += Math.abs(orig[s + k] - recon[s + k]);
      }
      const [r, g, bl] = heat(err / 3, HEAT_FULL_SCALE);
      out[c] = r;
      out[c + 1] = g;
      out[c + 2] = bl;
    }
  }
  return { pixels: out, width: W, height };
}
