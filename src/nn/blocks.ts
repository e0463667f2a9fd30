import type { Activation } from "../backends/kernels.js";
import { Attention } from "./attention.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Module } from "./module.js";
import { type Program, runProgram, type Step } from "./program.js";
import { ResnetBlock2D } from "./resnet.js";
import { Downsample2D, Upsample2D } from "./sampling.js";

interface Sampler extends Module {
  program(): Program;
}

/** Resnets, then an optional resampler: the shape of both VAE block types. */
class ResnetSamplerBlock<S extends Sampler> extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  protected readonly sampler: S | null;

  constructor(
    prefix: string,
    inChannels: number,
    outChannels: number,
    layers: number,
    groups: number,
    act: Activation,
    samplerKey: string,
    sampler: ((prefix: string) => S) | null,
  ) {
    super(prefix);
    for (let i = 0; i < layers; i++) {
      this.resnets.push(
        this.child(
          new ResnetBlock2D(this.key(`resnets.${i}`), i === 0 ? inChannels : outChannels, outChannels, groups, act),
        ),
      );
    }
    this.sampler = sampler ? this.child(sampler(this.key(samplerKey))) : null;
  }

  program(): Program {
    return [...this.resnets.flatMap((r) => r.program()), ...(this.sampler?.program() ?? [])];
  }

  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}

/** diffusers DownEncoderBlock2D: resnets, then an optional Downsample2D. */
export class DownEncoderBlock2D extends ResnetSamplerBlock<Downsample2D> {
  constructor(
    prefix: string,
    inChannels: number,
    outChannels: number,
    layers: number,
    groups: number,
    act: Activation,
    addDownsample: boolean,
  ) {
    super(
      prefix,
      inChannels,
      outChannels,
      layers,
      groups,
      act,
      "downsamplers.0",
      addDownsample ? (key) => new Downsample2D(key, outChannels) : null,
    );
  }
  get downsampler(): Downsample2D | null {
    return this.sampler;
  }
}

/** diffusers UpDecoderBlock2D: resnets, then an optional Upsample2D. */
export class UpDecoderBlock2D extends ResnetSamplerBlock<Upsample2D> {
  constructor(
    prefix: string,
    inChannels: number,
    outChannels: number,
    layers: number,
    groups: number,
    act: Activation,
    addUpsample: boolean,
  ) {
    super(
      prefix,
      inChannels,
      outChannels,
      layers,
      groups,
      act,
      "upsamplers.0",
      addUpsample ? (key) => new Upsample2D(key, outChannels) : null,
    );
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

  program(): Program {
    return [
      ...this.resnets[0].program(),
      ...this.attentions.map((a): Step => ({ kind: "global", name: a.prefix, run: (ctx, x) => a.forward(ctx, x) })),
      ...this.resnets[1].program(),
    ];
  }

  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}
