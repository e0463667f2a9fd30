import type { DeviceTensor, RunContext } from "./context.js";
import { Module, type Parameter } from "./module.js";

/** torch.nn.Linear with bias over the last dimension of a [..., inFeatures] tensor. */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(
    prefix: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    super(prefix);
    this.weight = this.param("weight", [outFeatures, inFeatures]);
    this.bias = this.param("bias", [outFeatures]);
  }

  async forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    const rows = x.size / this.inFeatures;
    const out = ctx.alloc([...x.shape.slice(0, -1), this.outFeatures]);
    await ctx.k.linear({
      x: x.buf,
      weight: this.weight.value,
      bias: this.bias.value,
      out: out.buf,
      rows,
      inFeatures: this.inFeatures,
      outFeatures: this.outFeatures,
    });
    return out;
  }
}
