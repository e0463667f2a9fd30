import type { Kernels } from "../backends/kernels.js";
import { f32ToF16 } from "../tensor/dtype.js";
import type { DeviceTensor, RunContext } from "./context.js";
import { GroupNorm } from "./group-norm.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";

/**
 * Computes attention for one Attention module: normalised tokens [B, N, C] in, projected output
 * [B, N, C] (after to_out) out. Processors are interchangeable and must give the same numbers. A processor
 * may free `tokens` (ctx.free) once it has projected them, so that the mid block at large sizes holds one
 * [B, N, C] tensor less; the caller's later free of them is then a no-op.
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
  ctx.free(tokens);
  const a = ctx.alloc(q.shape);
  await core(q, k, v, a);
  ctx.free(q, k, v);
  const out = await attn.toOut.forward(ctx, a);
  ctx.free(a);
  return out;
}

/**
 * The default: q/k/v projections, then one attention kernel that works in blocks with an online
 * softmax, so no backend holds more than a block of the N×N score matrix.
 */
export class MemoryEfficientAttnProcessor implements AttentionProcessor {
  readonly name: string = "MemoryEfficientAttnProcessor";
  run(ctx: RunContext, attn: Attention, tokens: DeviceTensor): Promise<DeviceTensor> {
    return projectAndAttend(ctx, attn, tokens, (q, k, v, out) => attendBlocked(ctx, attn, q, k, v, out));
  }
}

async function attendBlocked(
  ctx: RunContext,
  attn: Attention,
  q: DeviceTensor,
  k: DeviceTensor,
  v: DeviceTensor,
  out: DeviceTensor,
): Promise<void> {
  const [batch, n, c] = q.shape;
  await ctx.k.attention({
    q: q.buf,
    k: k.buf,
    v: v.buf,
    out: out.buf,
    batch,
    queries: n,
    keys: n,
    dim: c,
    scale: attn.scale,
  });
}

/**
 * diffusers' plain AttnProcessor: scores = scale · q kᵀ as a full [B, N, N] matrix, softmax, then
 * scores · v. Simple and memory-hungry (N² floats); kept as the readable twin of the blocked one.
 */
export class AttnProcessor implements AttentionProcessor {
  readonly name: string = "AttnProcessor";
  run(ctx: RunContext, attn: Attention, tokens: DeviceTensor): Promise<DeviceTensor> {
    const [batch, n, c] = tokens.shape;
    return projectAndAttend(ctx, attn, tokens, async (q, k, v, out) => {
      const scores = ctx.alloc([batch, n, n]);
      await ctx.k.matmul({
        a: q.buf,
        b: k.buf,
        out: scores.buf,
        batch,
        m: n,
        n,
        k: c,
        transposeB: true,
        alpha: attn.scale,
      });
      await ctx.k.softmax({ x: scores.buf, out: scores.buf, rows: batch * n, cols: n });
      await ctx.k.matmul({
        a: scores.buf,
        b: v.buf,
        out: out.buf,
        batch,
        m: n,
        n: c,
        k: n,
        transposeB: false,
        alpha: 1,
      });
      ctx.free(scores);
    });
  }
}

/**
 * For fused projections: one [3C, C] projection gives q, k and v in a single pass over the tokens,
 * then the blocked attention kernel. Needs `fuseProjections()` on the module (the model does it).
 */
export class FusedAttnProcessor implements AttentionProcessor {
  readonly name: string = "FusedAttnProcessor";
  async run(ctx: RunContext, attn: Attention, tokens: DeviceTensor): Promise<DeviceTensor> {
    const [batch, n, c] = tokens.shape;
    const qkvProj = await attn.fusedProjection(ctx);
    const qkv = await qkvProj.forward(ctx, tokens);
    ctx.free(tokens);
    const parts = [0, 1, 2].map((i) => {
      const t = ctx.alloc([batch, n, c]);
      return {
        t,
        done: ctx.k.copy({
          x: qkv.buf,
          out: t.buf,
          rows: batch * n,
          cols: c,
          xOffset: i * c,
          xRowStride: 3 * c,
          outOffset: 0,
          outRowStride: c,
        }),
      };
    });
    for (const p of parts) await p.done;
    ctx.free(qkv);
    const [q, k, v] = parts.map((p) => p.t);
    const a = ctx.alloc([batch, n, c]);
    await attendBlocked(ctx, attn, q, k, v, a);
    ctx.free(q, k, v);
    const out = await attn.toOut.forward(ctx, a);
    ctx.free(a);
    return out;
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
  processor: AttentionProcessor = new MemoryEfficientAttnProcessor();
  /** q, k and v weights stacked into one [3C, C] projection; built on first use after fusing. */
  private toQkv: Linear | null = null;

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

  /** The stacked q/k/v projection, built on the device from the separate ones the first time it is needed. */
  async fusedProjection(ctx: RunContext): Promise<Linear> {
    if (this.toQkv) return this.toQkv;
    const c = this.channels;
    const fused = new Linear(this.key("to_qkv"), c, 3 * c);
    const sources = [this.toQ, this.toK, this.toV];
    const half = sources[0].weight.value.dtype === "f16";
    fused.weight.buf = half ? ctx.k.allocHalf(3 * c * c) : ctx.k.alloc(3 * c * c);
    fused.bias.buf = ctx.k.alloc(3 * c);
    for (let i = 0; i < 3; i++) {
      const src = sources[i];
      if (half) {
        // f16 weights (weightDtype "f16") stack on the host: the copy kernel moves f32 only. Widening and
        // narrowing again is exact, so the stacked weight holds the same f16 values.
        ctx.k.writeHalf(fused.weight.buf, f32ToF16(await ctx.k.read(src.weight.value)), i * c * c);
      } else {
        await ctx.k.copy({
          x: src.weight.value,
          out: fused.weight.buf,
          rows: 1,
          cols: c * c,
          xOffset: 0,
          xRowStride: 0,
          outOffset: i * c * c,
          outRowStride: 0,
        });
      }
      await ctx.k.copy({
        x: src.bias.value,
        out: fused.bias.buf,
        rows: 1,
        cols: c,
        xOffset: 0,
        xRowStride: 0,
        outOffset: i * c,
        outRowStride: 0,
      });
    }
    this.toQkv = fused;
    return fused;
  }

  /** Frees the stacked projection (the separate q/k/v weights are never dropped). */
  releaseFused(k: Kernels): void {
    if (!this.toQkv) return;
    this.toQkv.release(k);
    this.toQkv = null;
  }

  override release(k: Kernels): void {
    this.releaseFused(k);
    super.release(k);
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
