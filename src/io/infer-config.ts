/**
 * Infer a diffusers AutoencoderKL config from a state dict in diffusers keys (after conversion):
 * single files carry weights but no config.json. What shapes cannot tell (norm_num_groups,
 * sample_size, scaling_factor, act_fn) gets Stable Diffusion's values; callers override via config.
 */
import { AutoencoderKLError } from "../errors.js";

/** Anything with a shape: a Tensor or a header entry. */
export interface Shaped {
  shape: readonly number[];
}

/** SD v1's VAE image size, which diffusers' single-file loader also assumes by default. */
export const DEFAULT_SINGLE_FILE_SAMPLE_SIZE = 512;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export function inferVaeConfig(stateDict: ReadonlyMap<string, Shaped>, source = "checkpoint"): Record<string, unknown> {
  const shapeOf = (key: string, rank: number, why: string): readonly number[] => {
    const t = stateDict.get(key);
    if (!t) throw new AutoencoderKLError(source, `cannot infer ${why}: missing tensor ${JSON.stringify(key)}`);
    if (t.shape.length !== rank) {
      throw new AutoencoderKLError(
        source,
        `cannot infer ${why}: tensor ${JSON.stringify(key)} has shape [${t.shape.join(", ")}], expected rank ${rank}`,
      );
    }
    return t.shape;
  };
  const count = (re: RegExp): number => {
    let n = 0;
    for (const k of stateDict.keys()) {
      const m = re.exec(k);
      if (m) n = Math.max(n, +m[1] + 1);
    }
    return n;
  };

  const hasEncoder = stateDict.has("encoder.conv_in.weight");
  const levels = hasEncoder ? count(/^encoder\.down_blocks\.(\d+)\./) : count(/^decoder\.up_blocks\.(\d+)\./);
  if (levels === 0)
    throw new AutoencoderKLError(
      source,
      "cannot infer block_out_channels: no encoder.down_blocks or decoder.up_blocks tensors",
    );

  const blockOut: number[] = [];
  for (let i = 0; i < levels; i++) {
    // conv1 of a level's first resnet outputs that level's channels.
    blockOut.push(
      hasEncoder
        ? shapeOf(`encoder.down_blocks.${i}.resnets.0.conv1.weight`, 4, "block_out_channels")[0]
        : shapeOf(`decoder.up_blocks.${levels - 1 - i}.resnets.0.conv1.weight`, 4, "block_out_channels")[0],
    );
  }
  const layersPerBlock = hasEncoder
    ? count(/^encoder\.down_blocks\.0\.resnets\.(\d+)\./)
    : count(/^decoder\.up_blocks\.0\.resnets\.(\d+)\./) - 1; // the decoder has one resnet more per level
  if (layersPerBlock < 1)
    throw new AutoencoderKLError(source, "cannot infer layers_per_block: no resnets in the first block");

  const inChannels = hasEncoder ? shapeOf("encoder.conv_in.weight", 4, "in_channels")[1] : 3;
  const outChannels = stateDict.has("decoder.conv_out.weight")
    ? shapeOf("decoder.conv_out.weight", 4, "out_channels")[0]
    : 3;
  const latentChannels = stateDict.has("decoder.conv_in.weight")
    ? shapeOf("decoder.conv_in.weight", 4, "latent_channels")[1]
    : shapeOf("encoder.conv_out.weight", 4, "latent_channels")[0] / 2; // the encoder outputs mean and logvar

  // GroupNorm widths are the block channels; 32 groups (diffusers' default) when it divides them all,
  // else the largest count up to 32 that does. Files don't record it, so a config should say.
  const g = blockOut.reduce(gcd, 0);
  let groups = 32;
  while (g % groups !== 0) groups--;

  return {
    _class_name: "AutoencoderKL",
    in_channels: inChannels,
    out_channels: outChannels,
    down_block_types: blockOut.map(() => "DownEncoderBlock2D"),
    up_block_types: blockOut.map(() => "UpDecoderBlock2D"),
    block_out_channels: blockOut,
    layers_per_block: layersPerBlock,
    act_fn: "silu",
    latent_channels: latentChannels,
    norm_num_groups: groups,
    sample_size: DEFAULT_SINGLE_FILE_SAMPLE_SIZE,
    scaling_factor: 0.18215,
    shift_factor: null,
    latents_mean: null,
    latents_std: null,
    force_upcast: true,
    use_quant_conv: stateDict.has("quant_conv.weight"),
    use_post_quant_conv: stateDict.has("post_quant_conv.weight"),
    mid_block_add_attention:
      stateDict.has("encoder.mid_block.attentions.0.to_q.weight") ||
      stateDict.has("decoder.mid_block.attentions.0.to_q.weight"),
  };
}
