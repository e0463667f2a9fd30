import type { AutoencoderKLConfig, Components } from "../index.js";

export interface MemoryEstimate {
  /** float32 weights on the backend. */
  weights: number;
  /** Largest set of live activations during encode / decode of one image. */
  encode: number;
  decode: number;
  /** weights + the larger of the two (or the one the loaded half runs). */
  peak: number;
}

/**
 * A rough peak-memory estimate (bytes) for one H×W image, from the config alone: float32 weights plus
 * the largest group of activations alive at once — a ResnetBlock's input, normalised copy, intermediate
 * and output at full resolution, or the mid-block attention's N×N score matrix (N = latent pixels).
 * It ignores allocator slack, so real use can be somewhat higher; it is meant for "will it fit".
 */
export function estimatePeakMemory(
  config: AutoencoderKLConfig,
  parameters: number,
  height: number,
  width: number,
  components: Components = "both",
): MemoryEstimate {
  const ch = config.block_out_channels;
  const levels = ch.length;
  const f = 4; // bytes per float32
  const resnet = (cin: number, cout: number, hw: number) => (2 * cin + 3 * cout) * hw;
  const attention = (c: number, n: number) => n * n + 6 * c * n;
  let enc = 0,
    dec = 0;
  for (let i = 0; i < levels; i++) {
    const hw = Math.ceil(height / 2 ** i) * Math.ceil(width / 2 ** i);
    const cin = i === 0 ? ch[0] : ch[i - 1];
    enc = Math.max(enc, resnet(cin, ch[i], hw) + config.in_channels * height * width);
    // Decoder level i (counted from the output): its first resnet takes the channels of the level below it.
    const below = i + 1 < levels ? ch[i + 1] : ch[i];
    dec = Math.max(dec, resnet(below, ch[i], hw) + config.out_channels * height * width);
    if (i + 1 < levels) dec = Math.max(dec, 2 * below * hw + (below * hw) / 4); // nearest ×2 then conv
  }
  const n = Math.ceil(height / 2 ** (levels - 1)) * Math.ceil(width / 2 ** (levels - 1));
  const cMid = ch[levels - 1];
  if (config.mid_block_add_attention) {
    enc = Math.max(enc, attention(cMid, n));
    dec = Math.max(dec, attention(cMid, n));
  }
  const weights = parameters * f;
  const active = components === "decoder" ? dec : components === "encoder" ? enc : Math.max(enc, dec);
  return { weights, encode: enc * f, decode: dec * f, peak: weights + active * f };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024,
    u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}
