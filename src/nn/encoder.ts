import type { Activation } from "../backends/kernels.js";
import { DownEncoderBlock2D, UNetMidBlock2D } from "./blocks.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Conv2d } from "./conv2d.js";
import { GroupNorm } from "./group-norm.js";
import { Module } from "./module.js";
import { type Program, runProgram } from "./program.js";

export interface CoderShape {
  blockOutChannels: number[];
  layersPerBlock: number;
  groups: number;
  act: Activation;
  midBlockAddAttention: boolean;
}

/** diffusers Encoder (double_z): conv_in, down blocks, mid block, GroupNorm + SiLU, conv_out to 2·latent. */
export class Encoder extends Module {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[] = [];
  readonly midBlock: UNetMidBlock2D;
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(prefix: string, inChannels: number, outChannels: number, s: CoderShape) {
    super(prefix);
    const boc = s.blockOutChannels;
    this.convIn = this.child(new Conv2d(this.key("conv_in"), inChannels, boc[0], 3, 1, 1));
    let prev = boc[0];
    boc.forEach((c, i) => {
      this.downBlocks.push(
        this.child(
          new DownEncoderBlock2D(
            this.key(`down_blocks.${i}`),
            prev,
            c,
            s.layersPerBlock,
            s.groups,
            s.act,
            i !== boc.length - 1,
          ),
        ),
      );
      prev = c;
    });
    const top = boc[boc.length - 1];
    this.midBlock = this.child(new UNetMidBlock2D(this.key("mid_block"), top, s.groups, s.act, s.midBlockAddAttention));
    this.convNormOut = this.child(new GroupNorm(this.key("conv_norm_out"), s.groups, top));
    this.convOut = this.child(new Conv2d(this.key("conv_out"), top, outChannels, 3, 1, 1));
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
      ...this.downBlocks.flatMap((b) => [...b.program(), { kind: "progress" } as const]),
      ...this.midBlock.program(),
      { kind: "progress" },
      { kind: "norm", norm: this.convNormOut, act: "silu" },
      { kind: "conv", conv: this.convOut },
      { kind: "progress" },
    ];
  }

  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}
