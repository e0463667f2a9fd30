import type { DeviceTensor, RunContext } from "./context.js";
import { GroupNorm } from "./group-norm.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";

/**
 * Computes attention for one Attention module: normalised tokens [B, N, C] in, projected output
 * [B, N, C] (after to_out) out. Processors are interchangeable and must give the same numbers.
 */
export interface AttentionProcessor {
  readonly name: string;
  run(ctx: RunContext, attn: Attention, tokens: DeviceTensor): Promise<DeviceTensor>;
}

/** Projects tokens with q/k/v, runs `core` on them and projects the result with to_out. */
export async function projectAndAttend(
  ctx: RunContext,
  attn: Attention,
  tokens: DeviceTensor,
  core: (q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor) => Promise<void>,
): Promise<DeviceTensor> {
  const q = await attn.toQ.forward(ctx, tokens);
  const k = await attn.toK.forward(ctx, tokens);
  const v = await attn.toV.forward(ctx, tokens);
  const a = ctx.alloc(q.shape);
  await core(q, k, v, a);
  ctx.free(q, k, v);
  const out = await attn.toOut.forward(ctx, a);
  ctx.free(a);
  return out;
}

/** The default: one fused attention kernel (blocked, online softmax in the fast backends). */
export class AttnProcessor implements AttentionProcessor {
  readonly name: string = "AttnProcessor";
  run(ctx: RunContext, attn: Attention, tokens: DeviceTensor): Promise<DeviceTensor> {
    const [batch, n, c] = tokens.shape;
    return projectAndAttend(ctx, attn, tokens, async (q, k, v, out) => {
      await ctx.k.attention({ q: q.buf, k: k.buf, v: v.buf, out: out.buf, batch, queries: n, keys: n, dim: c, scale: attn.scale });
    });
  }
}

/**
 * diffusers Attention as the VAE mid block uses it: GroupNorm, one head of width C, q/k/v/out linear
 * layers with bias, softmax in f32, residual add, rescale factor 1.
 */
export class Attention extends Module {
  readonly groupNorm: GroupNorm;
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  readonly scale: number;
  processor: AttentionProcessor = new AttnProcessor();

  constructor(
    prefix: string,
    readonly channels: number,
    groups: number,
    eps = 1e-6,
  ) {
    super(prefix);
    this.groupNorm = this.child(new GroupNorm(this.key("group_norm"), groups, channels, eps));
    this.toQ = this.child(new Linear(this.key("to_q"), channels, channels));
    this.toK = this.child(new Linear(this.key("to_k"), channels, channels));
    this.toV = this.child(new Linear(this.key("to_v"), channels, channels));
    this.toOut = this.child(new Linear(this.key("to_out.0"), channels, channels));
    this.scale = 1 / Math.sqrt(channels);
  }

  async forward(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> {
    const [b, c, h, w] = x.shape;
    const n = h * w;
    const normed = await this.groupNorm.forward(ctx, x);
    const tokens = ctx.alloc([b, n, c]);
    await ctx.k.transpose({ x: normed.buf, out: tokens.buf, batch: b, rows: c, cols: n });
    ctx.free(normed);
    const attended = await this.processor.run(ctx, this, tokens);
    ctx.free(tokens);
    const back = ctx.alloc([b, c, h, w]);
    await ctx.k.transpose({ x: attended.buf, out: back.buf, batch: b, rows: n, cols: c });
    ctx.free(attended);
    await ctx.k.add({ a: back.buf, b: x.buf, out: back.buf, length: back.size });
    return back;
  }
}
