import type { Activation } from "../../backends/kernels.js";
import { AutoencoderKLError } from "../../errors.js";

/** config.json of a diffusers AutoencoderKL: snake_case, as in the file. */
export interface AutoencoderKLConfig {
  _class_name?: string;
  _diffusers_version?: string;
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number;
  scaling_factor: number;
  shift_factor: number | null;
  latents_mean: number[] | null;
  latents_std: number[] | null;
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
  [extra: string]: unknown;
}

/** diffusers' AutoencoderKL.__init__ defaults, used where config.json omits a field. */
export const DEFAULT_CONFIG: Readonly<AutoencoderKLConfig> = Object.freeze({
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
});

const ACT_FNS: Record<string, Activation> = { silu: "silu", swish: "silu", mish: "mish", gelu: "gelu", relu: "relu" };

/** Channel counts above this are surely a broken file, and would make huge allocations. */
const MAX_CHANNELS = 16384;
const MAX_LEVELS = 12;
const MAX_LAYERS = 64;

/** Maps config act_fn to the kernel activation (resnets only; conv_norm_out always uses SiLU). */
export function activationOf(config: AutoencoderKLConfig): Activation {
  return ACT_FNS[config.act_fn];
}

/**
 * Fills diffusers' defaults and checks every field before anything is allocated.
 * `source` names the file (or "config") in error messages.
 */
export function resolveConfig(raw: unknown, source = "config"): AutoencoderKLConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new AutoencoderKLError(source, "config must be a JSON object");
  }
  const given = raw as Record<string, unknown>;
  const cfg: Record<string, unknown> = { ...structuredClone(DEFAULT_CONFIG as Record<string, unknown>) };
  for (const [k, v] of Object.entries(given)) {
    if (k === "__proto__" || k === "constructor" || k === "prototype") continue;
    if (v === undefined) continue;
    cfg[k] = structuredClone(v);
  }
  const err = (field: string, rule: string) => new AutoencoderKLError(`${source}: field "${field}"`, rule);

  const posInt = (field: string, max: number) => {
    const v = cfg[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max) {
      throw err(field, `must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const bool = (field: string) => {
    if (typeof cfg[field] !== "boolean") throw err(field, `must be true or false, got ${JSON.stringify(cfg[field])}`);
  };
  const finite = (field: string, nullable: boolean) => {
    const v = cfg[field];
    if (v === null && nullable) return;
    if (typeof v !== "number" || !Number.isFinite(v))
      throw err(field, `must be a finite number${nullable ? " or null" : ""}, got ${JSON.stringify(v)}`);
  };

  posInt("in_channels", MAX_CHANNELS);
  posInt("out_channels", MAX_CHANNELS);
  const latent = posInt("latent_channels", MAX_CHANNELS);
  posInt("layers_per_block", MAX_LAYERS);
  const groups = posInt("norm_num_groups", MAX_CHANNELS);
  posInt("sample_size", 1 << 20);

  const boc = cfg.block_out_channels;
  if (!Array.isArray(boc) || boc.length < 1 || boc.length > MAX_LEVELS) {
    throw err("block_out_channels", `must be a list of 1 to ${MAX_LEVELS} channel counts, got ${JSON.stringify(boc)}`);
  }
  boc.forEach((c, i) => {
    if (typeof c !== "number" || !Number.isInteger(c) || c < 1 || c > MAX_CHANNELS) {
      throw err(
        "block_out_channels",
        `entry ${i} must be an integer from 1 to ${MAX_CHANNELS}, got ${JSON.stringify(c)}`,
      );
    }
    if (c % groups !== 0) {
      throw err(
        "norm_num_groups",
        `${groups} does not divide block_out_channels[${i}] = ${c} (GroupNorm needs channels divisible by groups)`,
      );
    }
  });
  for (const [field, allowed] of [
    ["down_block_types", "DownEncoderBlock2D"],
    ["up_block_types", "UpDecoderBlock2D"],
  ] as const) {
    const list = cfg[field];
    if (!Array.isArray(list)) throw err(field, `must be a list of block type names, got ${JSON.stringify(list)}`);
    if (list.length !== boc.length) {
      throw err(
        field,
        `has ${list.length} entries but block_out_channels has ${boc.length}; the lists must have the same length`,
      );
    }
    list.forEach((t, i) => {
      if (t !== allowed)
        throw err(field, `entry ${i} is ${JSON.stringify(t)}; the only supported block type is "${allowed}"`);
    });
  }
  if (typeof cfg.act_fn !== "string" || !(cfg.act_fn in ACT_FNS)) {
    throw err(
      "act_fn",
      `unknown activation ${JSON.stringify(cfg.act_fn)}; supported: ${Object.keys(ACT_FNS).join(", ")}`,
    );
  }
  finite("scaling_factor", false);
  finite("shift_factor", true);
  for (const field of ["latents_mean", "latents_std"]) {
    const v = cfg[field];
    if (v === null) continue;
    if (!Array.isArray(v) || v.length !== latent || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
      throw err(
        field,
        `must be null or a list of ${latent} numbers (one per latent channel), got ${JSON.stringify(v)}`,
      );
    }
  }
  for (const field of ["force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"]) bool(field);
  return cfg as AutoencoderKLConfig;
}
