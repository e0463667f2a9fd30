import type { Activation } from "../backends/kernels.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Conv2d } from "./conv2d.js";
import { GroupNorm } from "./group-norm.js";
import { Module } from "./module.js";
import { type Program, runProgram } from "./program.js";

/**
 * diffusers ResnetBlock2D as the VAE uses it (no time embedding, no dropout at inference, output scale 1):
 * norm1 → act → conv1 → norm2 → act → conv2, plus the input (through a 1×1 conv when channels change).
 */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;

  constructor(
    prefix: string,
    inChannels: number,
    outChannels: number,
    groups: number,
    readonly act: Activation,
    eps = 1e-6,
  ) {
    super(prefix);
    this.norm1 = this.child(new GroupNorm(this.key("norm1"), groups, inChannels, eps));
    this.conv1 = this.child(new Conv2d(this.key("conv1"), inChannels, outChannels, 3, 1, 1));
    this.norm2 = this.child(new GroupNorm(this.key("norm2"), groups, outChannels, eps));
    this.conv2 = this.child(new Conv2d(this.key("conv2"), outChannels, outChannels, 3, 1, 1));
    this.convShortcut =
      inChannels !== outChannels ? this.child(new Conv2d(this.key("conv_shortcut"), inChannels, outChannels, 1)) : null;
  }

  program(): Program {
    return [
      { kind: "push" },
      { kind: "norm", norm: this.norm1, act: this.act },
      { kind: "conv", conv: this.conv1 },
      { kind: "norm", norm: this.norm2, act: this.act },
      { kind: "residualConv", conv: this.conv2, shortcut: this.convShortcut },
      { kind: "boundary" },
    ];
  }

  /** Consumes nothing: the caller still owns and frees `x`. */
  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}
