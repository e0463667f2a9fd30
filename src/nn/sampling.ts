import type { DeviceTensor, RunContext } from "./context.js";
import { Conv2d } from "./conv2d.js";
import { Module } from "./module.js";

/** diffusers Downsample2D with padding 0: zero pad (left 0, right 1, top 0, bottom 1), 3×3 conv stride 2. */
export class Downsample2D extends Module {
  readonly conv: Conv2d;
  constructor(prefix: string, channels: number) {
    super(prefix);
    this.conv = this.child(new Conv2d(this.key("conv"), channels, channels, 3, 2, { top: 0, bottom: 1, left: 0, right: 1 }));
  }
  forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    return this.conv.forward(ctx, x);
  }
}

/** diffusers Upsample2D: nearest-neighbour ×2, then 3×3 conv with padding 1. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;
  constructor(prefix: string, channels: number) {
    super(prefix);
    this.conv = this.child(new Conv2d(this.key("conv"), channels, channels, 3, 1, 1));
  }
  async forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    const [n, c, h, w] = x.shape;
    const up = ctx.alloc([n, c, 2 * h, 2 * w]);
    await ctx.k.upsampleNearest2x({ x: x.buf, out: up.buf, planes: n * c, height: h, width: w });
    const out = await this.conv.forward(ctx, up);
    ctx.free(up);
    return out;
  }
}
