import type { DeviceTensor, RunContext } from "./context.js";
import { Module, type Parameter } from "./module.js";

export interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** torch.nn.Conv2d with bias; padding may be asymmetric (Downsample2D pads right/bottom only). */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  readonly padding: Padding;

  constructor(
    prefix: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly stride = 1,
    padding: number | Padding = 0,
  ) {
    super(prefix);
    this.weight = this.param("weight", [outChannels, inChannels, kernelSize, kernelSize]);
    this.bias = this.param("bias", [outChannels]);
    this.padding =
      typeof padding === "number" ? { top: padding, bottom: padding, left: padding, right: padding } : padding;
  }

  /**
   * Returns a new tensor; `residual` (same shape as the output) is added in the kernel's epilogue. upsample:
   * convolve x upsampled ×2 (nearest) without forming it (Upsample2D; no residual then).
   */
  async forward(ctx: RunContext, x: DeviceTensor, residual?: DeviceTensor, upsample = false): Promise<DeviceTensor> {
    const [n, , h, w] = x.shape;
    const { top, bottom, left, right } = this.padding;
    const up = upsample ? 2 : 1;
    const oh = Math.floor((up * h + top + bottom - this.kernelSize) / this.stride) + 1;
    const ow = Math.floor((up * w + left + right - this.kernelSize) / this.stride) + 1;
    const out = ctx.alloc([n, this.outChannels, oh, ow]);
    await ctx.k.conv2d({
      x: x.buf,
      weight: this.weight.value,
      bias: this.bias.value,
      residual: residual?.buf ?? null,
      out: out.buf,
      batch: n,
      inChannels: this.inChannels,
      inHeight: h,
      inWidth: w,
      outChannels: this.outChannels,
      kernelH: this.kernelSize,
      kernelW: this.kernelSize,
      stride: this.stride,
      padTop: top,
      padBottom: bottom,
      padLeft: left,
      padRight: right,
      outHeight: oh,
      outWidth: ow,
      ...(upsample ? { upsample } : {}),
    });
    return out;
  }
}
