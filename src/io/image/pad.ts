import { AutoencoderKLError } from "../../errors.js";
import { Tensor } from "../../tensor/tensor.js";

/**
 * Pads a [B, C, H, W] tensor on the right and bottom, replicating its edge pixels, so H and W become
 * multiples of `multiple` (the VAE's 2^(levels-1)). Edge replication keeps the border statistics close
 * to the image's own, so the reconstruction cropped back shows no dark frame. Returns the input when no
 * padding is needed.
 */
export function padToMultiple(x: Tensor, multiple: number): Tensor {
  if (x.shape.length !== 4)
    throw new AutoencoderKLError("padToMultiple: x", `must be [B, C, H, W], got [${x.shape.join(", ")}]`);
  if (!Number.isInteger(multiple) || multiple < 1)
    throw new AutoencoderKLError("padToMultiple: multiple", `must be a positive integer, got ${multiple}`);
  const [b, c, h, w] = x.shape;
  const H = Math.ceil(h / multiple) * multiple,
    W = Math.ceil(w / multiple) * multiple;
  if (H === h && W === w) return x;
  const out = new Float32Array(b * c * H * W);
  for (let p = 0; p < b * c; p++) {
    const src = p * h * w,
      dst = p * H * W;
    for (let y = 0; y < H; y++) {
      const sy = Math.min(y, h - 1);
      const row = x.data.subarray(src + sy * w, src + sy * w + w);
      out.set(row, dst + y * W);
      out.fill(row[w - 1], dst + y * W + w, dst + y * W + W);
    }
  }
  return new Tensor(out, [b, c, H, W]);
}

/** The top-left h × w of a [B, C, H, W] tensor (undoes padToMultiple). */
export function cropTo(x: Tensor, h: number, w: number): Tensor {
  if (x.shape.length !== 4)
    throw new AutoencoderKLError("cropTo: x", `must be [B, C, H, W], got [${x.shape.join(", ")}]`);
  const [b, c, H, W] = x.shape;
  if (!(h >= 1 && w >= 1 && h <= H && w <= W))
    throw new AutoencoderKLError("cropTo", `cannot crop [${x.shape.join(", ")}] to ${h}×${w}`);
  if (h === H && w === W) return x;
  const out = new Float32Array(b * c * h * w);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < h; y++) out.set(x.data.subarray(p * H * W + y * W, p * H * W + y * W + w), p * h * w + y * w);
  }
  return new Tensor(out, [b, c, h, w]);
}
