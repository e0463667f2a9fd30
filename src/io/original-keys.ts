/**
 * The one table from original latent-diffusion VAE names (as in Stable Diffusion .ckpt/.safetensors
 * single files) and legacy diffusers attention names to current diffusers state-dict keys.
 * Facts from diffusers' convert_ldm_vae_checkpoint; diffusers-named keys pass through unchanged.
 */
import { AutoencoderKLError } from "../errors.js";
import { Tensor } from "../tensor/tensor.js";
import type { TensorStream } from "./tensor-stream.js";

/** Whole Stable Diffusion checkpoints keep the VAE under this prefix. */
export const LDM_VAE_PREFIX = "first_stage_model.";

/** Top-level modules of AutoencoderKL; anything else (loss.*, model_ema.*, unet, text encoder) is skipped. */
const VAE_ROOTS = ["encoder.", "decoder.", "quant_conv.", "post_quant_conv."];

const ATTENTION_NAMES: Readonly<Record<string, string>> = {
  // original latent-diffusion AttnBlock (1×1 convs)
  norm: "group_norm",
  q: "to_q",
  k: "to_k",
  v: "to_v",
  proj_out: "to_out.0",
  // diffusers < 0.14 AttentionBlock
  query: "to_q",
  key: "to_k",
  value: "to_v",
  proj_attn: "to_out.0",
};

/** Inside a resnet only the shortcut is renamed. */
const resnet = (rest: string): string => rest.replace(/^nin_shortcut\./, "conv_shortcut.");

interface RuleContext {
  /** Number of decoder levels: original `decoder.up.{i}` is diffusers `decoder.up_blocks.{L-1-i}`. */
  upLevels: number;
}

type KeyRule = { pattern: RegExp; to: (m: RegExpExecArray, ctx: RuleContext) => string };

/**
 * diffusers < 0.14 named the mid-block attention's projections query/key/value/proj_attn. diffusers
 * still converts them on load, in folders as in single files, and so do we: this one rule serves both.
 */
const DEPRECATED_ATTENTION_RULE: KeyRule = {
  pattern: /^(encoder|decoder)\.mid_block\.attentions\.(\d+)\.(query|key|value|proj_attn)\.(.+)$/,
  to: (m) => `${m[1]}.mid_block.attentions.${+m[2]}.${ATTENTION_NAMES[m[3]]}.${m[4]}`,
};

/** The conversion table. Each rule sees the key without the `first_stage_model.` prefix. */
export const ORIGINAL_KEY_RULES: ReadonlyArray<KeyRule> = [
  { pattern: /^(encoder|decoder)\.norm_out\.(.+)$/, to: (m) => `${m[1]}.conv_norm_out.${m[2]}` },
  {
    pattern: /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/,
    to: (m) => `encoder.down_blocks.${+m[1]}.resnets.${+m[2]}.${resnet(m[3])}`,
  },
  {
    pattern: /^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/,
    to: (m) => `encoder.down_blocks.${+m[1]}.downsamplers.0.conv.${m[2]}`,
  },
  {
    pattern: /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/,
    to: (m, c) => `decoder.up_blocks.${c.upLevels - 1 - +m[1]}.resnets.${+m[2]}.${resnet(m[3])}`,
  },
  {
    pattern: /^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/,
    to: (m, c) => `decoder.up_blocks.${c.upLevels - 1 - +m[1]}.upsamplers.0.conv.${m[2]}`,
  },
  {
    pattern: /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/,
    to: (m) => `${m[1]}.mid_block.resnets.${+m[2] - 1}.${resnet(m[3])}`,
  },
  {
    pattern: /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(.+)$/,
    to: (m) => `${m[1]}.mid_block.attentions.0.${ATTENTION_NAMES[m[2]]}.${m[3]}`,
  },
  DEPRECATED_ATTENTION_RULE,
];

/** Apply the table to one key (already without prefix); unmatched keys come back unchanged. */
export function convertOriginalKey(key: string, upLevels = 0): string {
  for (const rule of ORIGINAL_KEY_RULES) {
    const m = rule.pattern.exec(key);
    if (m) return rule.to(m, { upLevels });
  }
  return key;
}

/** Which names of a file belong to the VAE, and what each becomes. */
export interface VaeKeyPlan {
  /** The prefix stripped from every VAE key ("" for VAE-only files). */
  prefix: string;
  /** file name → diffusers name, in file order. */
  rename: Map<string, string>;
  /** Names left out (not part of the VAE). */
  skipped: string[];
}

/** Plan the conversion from the names alone, so unwanted tensors are never converted. */
export function planVaeKeys(names: Iterable<string>, source = "checkpoint"): VaeKeyPlan {
  const all = [...names];
  // A whole SD checkpoint: only first_stage_model.* is the VAE; unprefixed keys belong to other models.
  const prefix = all.some((n) => n.startsWith(LDM_VAE_PREFIX)) ? LDM_VAE_PREFIX : "";
  const rename = new Map<string, string>();
  const skipped: string[] = [];
  const kept: [string, string][] = [];
  let upLevels = 0;
  for (const name of all) {
    const inner = name.startsWith(prefix) ? name.slice(prefix.length) : undefined;
    if (inner === undefined || !VAE_ROOTS.some((r) => inner.startsWith(r))) {
      skipped.push(name);
      continue;
    }
    const up = /^decoder\.up\.(\d+)\./.exec(inner);
    if (up) upLevels = Math.max(upLevels, +up[1] + 1);
    kept.push([name, inner]);
  }
  const ctx: RuleContext = { upLevels };
  const owner = new Map<string, string>();
  for (const [name, inner] of kept) {
    const target = convertOriginalKey(inner, ctx.upLevels);
    const previous = owner.get(target);
    if (previous !== undefined) {
      throw new AutoencoderKLError(
        source,
        `tensors ${JSON.stringify(previous)} and ${JSON.stringify(name)} both map to ${JSON.stringify(target)}`,
      );
    }
    owner.set(target, name);
    rename.set(name, target);
  }
  return { prefix, rename, skipped };
}

const ATTENTION_LINEAR = /\.mid_block\.attentions\.\d+\.(to_q|to_k|to_v|to_out\.0)\.weight$/;

/**
 * Layout fix-ups for a tensor under its diffusers name: the original attention projections are
 * 1×1 convs [C, C, 1, 1] (or conv1d [C, C, 1]); diffusers' Linear wants [C, C]. Same data.
 */
export function convertVaeTensor(diffusersName: string, tensor: Tensor, source = "checkpoint"): Tensor {
  const shape = convertVaeShape(diffusersName, tensor.shape, source);
  return shape === tensor.shape ? tensor : new Tensor(tensor.data, [...shape]);
}

/** convertVaeTensor's layout fix-up on a shape alone (streamed loading checks shapes from the header). */
export function convertVaeShape(
  diffusersName: string,
  shape: readonly number[],
  source = "checkpoint",
): readonly number[] {
  if (!ATTENTION_LINEAR.test(diffusersName) || shape.length <= 2) return shape;
  const [o, i, ...rest] = shape;
  if (rest.some((d) => d !== 1)) {
    throw new AutoencoderKLError(
      source,
      `tensor ${JSON.stringify(diffusersName)}: attention projection of shape [${shape.join(", ")}] is not a 1×1 convolution`,
    );
  }
  return [o, i];
}

/** Convert a loaded state dict (any of the supported namings) to diffusers keys and layouts. */
export function convertVaeStateDict(
  tensors: Map<string, Tensor>,
  source = "checkpoint",
): { stateDict: Map<string, Tensor>; skipped: string[] } {
  const plan = planVaeKeys(tensors.keys(), source);
  const stateDict = new Map<string, Tensor>();
  for (const [name, target] of plan.rename) stateDict.set(target, convertVaeTensor(target, tensors.get(name)!, source));
  return { stateDict, skipped: plan.skipped };
}

/**
 * A diffusers folder's state dict with the deprecated attention names (query, key, value, proj_attn)
 * converted, as diffusers' from_pretrained converts them; every other key passes through unchanged
 * (unexpected ones are the loader's to report). `renamed` lists the keys converted.
 */
export function convertDeprecatedAttentionKeys(
  tensors: Map<string, Tensor>,
  source = "state dict",
): { stateDict: Map<string, Tensor>; renamed: string[] } {
  const { targets, renamed } = planDeprecatedAttentionKeys(tensors.keys(), source);
  const stateDict = new Map<string, Tensor>();
  for (const [name, tensor] of tensors) {
    const target = targets.get(name)!;
    stateDict.set(target, target !== name ? convertVaeTensor(target, tensor, source) : tensor);
  }
  return { stateDict, renamed };
}

/** convertDeprecatedAttentionKeys on a stream: shapes renamed now, tensors converted as they are read. */
export function convertDeprecatedAttentionStream(
  stream: TensorStream,
  source = "state dict",
): { stream: TensorStream; renamed: string[] } {
  const { targets, renamed } = planDeprecatedAttentionKeys(stream.shapes.keys(), source);
  if (renamed.length === 0) return { stream, renamed };
  const shapes = new Map<string, readonly number[]>();
  for (const [name, shape] of stream.shapes) {
    const target = targets.get(name)!;
    shapes.set(target, target !== name ? convertVaeShape(target, shape, source) : shape);
  }
  return {
    stream: {
      shapes,
      read: (keys, take) =>
        stream.read(new Set([...targets].filter(([, t]) => keys.has(t)).map(([n]) => n)), (name, t) => {
          const target = targets.get(name)!;
          take(target, target !== name ? convertVaeTensor(target, t, source) : t);
        }),
      close: () => stream.close(),
    },
    renamed,
  };
}

/** Each name's target (itself unless deprecated); two names with one target are refused. */
function planDeprecatedAttentionKeys(
  names: Iterable<string>,
  source: string,
): { targets: Map<string, string>; renamed: string[] } {
  const renamed: string[] = [];
  const targets = new Map<string, string>();
  const owner = new Map<string, string>();
  for (const name of names) {
    const m = DEPRECATED_ATTENTION_RULE.pattern.exec(name);
    const target = m ? DEPRECATED_ATTENTION_RULE.to(m, { upLevels: 0 }) : name;
    const previous = owner.get(target);
    if (previous !== undefined) {
      throw new AutoencoderKLError(
        source,
        `tensors ${JSON.stringify(previous)} and ${JSON.stringify(name)} both map to ${JSON.stringify(target)}`,
      );
    }
    owner.set(target, name);
    targets.set(name, target);
    if (m) renamed.push(name);
  }
  return { targets, renamed };
}
