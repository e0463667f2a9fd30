/**
 * Which half of the VAE a model loads. Decoding needs post_quant_conv + decoder, encoding encoder +
 * quant_conv; the other half's tensors are never read where the file format allows ranged reads.
 */
import { AutoencoderKLError } from "../errors.js";

export type Components = "decoder" | "encoder" | "both";

export interface ComponentsOptions {
  /**
   * Load only the half of the model that is used: "decoder" (post_quant_conv + decoder; `decode` only),
   * "encoder" (encoder + quant_conv; `encode` only), or "both" (default). The other half's weights are
   * never read from safetensors files (ranged reads) and never kept in memory.
   */
  components?: Components;
}

const ROOTS: Record<"decoder" | "encoder", readonly string[]> = {
  decoder: ["decoder.", "post_quant_conv."],
  encoder: ["encoder.", "quant_conv."],
};

/** Validates a `components` option (undefined → "both"). */
export function checkComponents(value: unknown, what = "options.components"): Components {
  if (value === undefined) return "both";
  if (value === "decoder" || value === "encoder" || value === "both") return value;
  throw new AutoencoderKLError(what, `must be "decoder", "encoder" or "both", got ${JSON.stringify(value)}`);
}

/** The half a diffusers key belongs to, or undefined for keys of neither (reported as unexpected by the loader). */
export function halfOf(key: string): "decoder" | "encoder" | undefined {
  if (ROOTS.decoder.some((r) => key.startsWith(r))) return "decoder";
  if (ROOTS.encoder.some((r) => key.startsWith(r))) return "encoder";
  return undefined;
}

/** True for a diffusers key of the half that `components` leaves out: skipped unread, never "unexpected". */
export function isSkippedKey(key: string, components: Components): boolean {
  if (components === "both") return false;
  const half = halfOf(key);
  return half !== undefined && half !== components;
}
