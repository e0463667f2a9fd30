import type { Activation } from "../backends/kernels.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { Module, type Parameter } from "./module.js";

/** torch.nn.GroupNorm (affine), with the following activation fused into the same pass. */
export class GroupNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(
    prefix: string,
    readonly groups: number,
    readonly channels: number,
    readonly eps = 1e-6,
  ) {
    super(prefix);
    // host copies too: exact tiling turns group statistics into a per-channel affine on the host
    this.weight = this.param("weight", [channels], true);
    this.bias = this.param("bias", [channels], true);
  }

  /** Normalises over [C/groups, spatial] of an [N, C, ...] tensor; returns a new tensor. */
  async forward(ctx: RunContext, x: DeviceTensor, activation: Activation = "none"): Promise<DeviceTensor> {
    const out = ctx.alloc(x.shape);
    const spatial = x.shape.slice(2).reduce((a, b) => a * b, 1);
    await ctx.k.groupNorm({
      x: x.buf,
      gamma: this.weight.value,
      beta: this.bias.value,
      out: out.buf,
      batch: x.shape[0],
      channels: this.channels,
      spatial,
      groups: this.groups,
      eps: this.eps,
      activation,
    });
    return out;
  }
}
