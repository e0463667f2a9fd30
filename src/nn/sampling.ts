import type { DeviceTensor, RunContext } from "./context.js";
import { Conv2d } from "./conv2d.js";
import { Module } from "./module.js";
import { type Program, runProgram } from "./program.js";

/** diffusers Downsample2D with padding 0: zero pad (left 0, right 1, top 0, bottom 1), 3×3 conv stride 2. */
export class Downsample2D extends Module {
  readonly conv: Conv2d;
  constructor(prefix: string, channels: number) {
    super(prefix);
    this.conv = this.child(
      new Conv2d(this.key("conv"), channels, channels, 3, 2, { top: 0, bottom: 1, left: 0, right: 1 }),
    );
  }
  program(): Program {
    return [{ kind: "conv", conv: this.conv }, { kind: "boundary" }];
  }
  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}

/** diffusers Upsample2D: nearest-neighbour ×2, then 3×3 conv with padding 1. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;
  constructor(prefix: string, channels: number) {
    super(prefix);
    this.conv = this.child(new Conv2d(this.key("conv"), channels, channels, 3, 1, 1));
  }
  program(): Program {
    return [{ kind: "up" }, { kind: "conv", conv: this.conv }, { kind: "boundary" }];
  }
  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return runProgram(ctx, this.program(), x);
  }
}
