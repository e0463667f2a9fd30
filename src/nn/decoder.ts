import { UNetMidBlock2D, UpDecoderBlock2D } from "./blocks.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Conv2d } from "./conv2d.js";
import type { CoderShape } from "./encoder.js";
import { GroupNorm } from "./group-norm.js";
import { Module } from "./module.js";
import { type Program, runProgram } from "./program.js";

/** diffusers Decoder: conv_in, mid block, up blocks (channels reversed, layers+1 each), GroupNorm + SiLU, conv_out. */
export class Decoder extends Module {
  readonly convIn: Conv2d;
  readonly midBlock: UNetMidBlock2D;
  readonly upBlocks: UpDecoderBlock2D[] = [];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(prefix: string, inChannels: number, outChannels: number, s: CoderShape) {
    super(prefix);
    const reversed = [...s.blockOutChannels].reverse();
    this.convIn = this.child(new Conv2d(this.key("conv_in"), inChannels, reversed[0], 3, 1, 1));
    this.midBlock = this.child(
      new UNetMidBlock2D(this.key("mid_block"), reversed[0], s.groups, s.act, s.midBlockAddAttention),
    );
    let prev = reversed[0];
    reversed.forEach((c, i) => {
      this.upBlocks.push(
        this.child(
          new UpDecoderBlock2D(
            this.key(`up_blocks.${i}`),
            prev,
            c,
            s.layersPerBlock + 1,
            s.groups,
            s.act,
            i !== reversed.length - 1,
          ),
        ),
      );
      prev = c;
    });
    const bottom = s.blockOutChannels[0];
    this.convNormOut = this.child(new GroupNorm(this.key("conv_norm_out"), s.groups, bottom));
    this.convOut = this.child(new Conv2d(this.key("conv_out"), bottom, outChannels, 3, 1, 1));
  }

  /** Progress steps one forward pass reports (the program's progress markers). */
  get steps(): number {
    return this.program().filter((s) => s.kind === "progress").length;
  }

  program(): Program {
    return [
      { kind: "conv", conv: this.convIn },
      { kind: "boundary" },
      { kind: "progress" },
      ...this.midBlock.program(),
      { kind: "progress" },
      ...this.upBlocks.flatMap((b) => [...b.program(), { kind: "progress" } as const]),
      { kind: "norm", norm: this.convNormOut, act: "silu" },
      { kind: "conv", conv: this.convOut },
      { kind: "progress" },
    ];
  }

  forward(ctx: RunContext, z: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), z);
  }
}
