import type { Activation } from "../backends/kernels.js";
import { Attention } from "./attention.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Module } from "./module.js";
import { ResnetBlock2D } from "./resnet.js";
import { Downsample2D, Upsample2D } from "./sampling.js";

/** Runs resnets in sequence, freeing each intermediate; the caller keeps ownership of `x`. */
async function runResnets(ctx: RunContext, resnets: ResnetBlock2D[], x: DeviceTensor): Promise<DeviceTensor> {
  let h = x;
  for (const r of resnets) {
    const next = await r.forward(ctx, h);
    if (h !== x) ctx.free(h);
    h = next;
  }
  return h;
}

interface Sampler extends Module {
  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor>;
}

/** Resnets, then an optional resampler: the shape of both VAE block types. */
class ResnetSamplerBlock<S extends Sampler> extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  protected readonly sampler: S | null;

  constructor(prefix: string, inChannels: number, outChannels: number, layers: number, groups: number, act: Activation, samplerKey: string, sampler: ((prefix: string) => S) | null) {
    super(prefix);
    for (let i = 0; i < layers; i++) {
      this.resnets.push(this.child(new ResnetBlock2D(this.key(`resnets.${i}`), i === 0 ? inChannels : outChannels, outChannels, groups, act)));
    }
    this.sampler = sampler ? this.child(sampler(this.key(samplerKey))) : null;
  }

  async forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    const h = await runResnets(ctx, this.resnets, x);
    if (!this.sampler) return h;
    const out = await this.sampler.forward(ctx, h);
    if (h !== x) ctx.free(h);
    return out;
  }
}

/** diffusers DownEncoderBlock2D: resnets, then an optional Downsample2D. */
export class DownEncoderBlock2D extends ResnetSamplerBlock<Downsample2D> {
  constructor(prefix: string, inChannels: number, outChannels: number, layers: number, groups: number, act: Activation, addDownsample: boolean) {
    super(prefix, inChannels, outChannels, layers, groups, act, "downsamplers.0", addDownsample ? (key) => new Downsample2D(key, outChannels) : null);
  }
  get downsampler(): Downsample2D | null {
    return this.sampler;
  }
}

/** diffusers UpDecoderBlock2D: resnets, then an optional Upsample2D. */
export class UpDecoderBlock2D extends ResnetSamplerBlock<Upsample2D> {
  constructor(prefix: string, inChannels: number, outChannels: number, layers: number, groups: number, act: Activation, addUpsample: boolean) {
    super(prefix, inChannels, outChannels, layers, groups, act, "upsamplers.0", addUpsample ? (key) => new Upsample2D(key, outChannels) : null);
  }
  get upsampler(): Upsample2D | null {
    return this.sampler;
  }
}

/** diffusers UNetMidBlock2D without time embedding: resnet, (attention), resnet. */
export class UNetMidBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Attention[];

  constructor(prefix: string, channels: number, groups: number, act: Activation, addAttention: boolean) {
    super(prefix);
    this.resnets = [this.child(new ResnetBlock2D(this.key("resnets.0"), channels, channels, groups, act))];
    this.attentions = addAttention ? [this.child(new Attention(this.key("attentions.0"), channels, groups))] : [];
    this.resnets.push(this.child(new ResnetBlock2D(this.key("resnets.1"), channels, channels, groups, act)));
  }

  async forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    let h = await this.resnets[0].forward(ctx, x);
    for (const attn of this.attentions) {
      const a = await attn.forward(ctx, h);
      ctx.free(h);
      h = a;
    }
    const out = await this.resnets[1].forward(ctx, h);
    ctx.free(h);
    return out;
  }
}
