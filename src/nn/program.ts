/**
 * The network as data. Each module describes its forward pass once, as a flat list of steps over one
 * current tensor (`program()`); the same list is run eagerly (`runProgram`, what every module's forward
 * does) and tile by tile by the exact tiler (models/autoencoder-kl/exact-tiling.ts), which needs to know
 * which steps are local (convolutions, upsampling: halos), which reduce over the whole tensor (GroupNorm:
 * statistics passes) and which are global (attention: run untiled). A fusion is one rewrite of the list.
 */
import type { Activation } from "../backends/kernels.js";
import type { DeviceTensor, RunContext } from "./context.js";
import type { Conv2d } from "./conv2d.js";
import type { GroupNorm } from "./group-norm.js";

export type Step =
  /** current = conv(current) */
  | { kind: "conv"; conv: Conv2d }
  /** current = activation(GroupNorm(current)) */
  | { kind: "norm"; norm: GroupNorm; act: Activation }
  /** current = nearest ×2 (current); fused into a "conv" right after it (never formed) */
  | { kind: "up" }
  /** Keep the current tensor as a resnet's skip input. */
  | { kind: "push" }
  /** current = conv(current) + shortcut(skip), the skip popped (the shortcut is the identity when null). */
  | { kind: "residualConv"; conv: Conv2d; shortcut: Conv2d | null }
  /** No skip is pending here: the tiler may keep this tensor as a checkpoint. */
  | { kind: "boundary" }
  /** A step that needs the whole tensor at once (attention): never tiled. */
  | { kind: "global"; name: string; run(ctx: RunContext, x: DeviceTensor): Promise<DeviceTensor> }
  /** One progress step of an eager pass (encode/decode report blocks done). */
  | { kind: "progress" };

export type Program = readonly Step[];

/** Output size of a conv along one axis. */
export function convOutSize(conv: Conv2d, size: number, axis: 0 | 1): number {
  const p = conv.padding;
  const pad = axis === 0 ? p.top + p.bottom : p.left + p.right;
  return Math.floor((size + pad - conv.kernelSize) / conv.stride) + 1;
}

/**
 * Whether step i is a conv that reads the upsampling step before it (i - 1 ≥ from) upsampled on the fly:
 * the "up" step then forms nothing. A 3×3 stride-1 conv (Upsample2D's) only.
 */
export function upsampleFused(program: Program, i: number, from = 0): boolean {
  const s = program[i];
  return (
    i - 1 >= from &&
    program[i - 1].kind === "up" &&
    s?.kind === "conv" &&
    s.conv.kernelSize === 3 &&
    s.conv.stride === 1
  );
}

/**
 * Runs the steps on `x` (which stays the caller's) and returns the result, freeing every intermediate as
 * soon as nothing later reads it. `progress: false` skips the progress steps (the tiler counts tiles).
 */
export async function runProgram(
  ctx: RunContext,
  program: Program,
  x: DeviceTensor,
  options: { progress?: boolean } = {},
): Promise<DeviceTensor> {
  let h = x;
  const skips: DeviceTensor[] = [];
  // a tensor is the caller's (x) or still needed as a skip: not freed when replaced
  const replace = (next: DeviceTensor): void => {
    if (h !== x && !skips.includes(h)) ctx.free(h);
    h = next;
  };
  for (const [i, step] of program.entries()) {
    switch (step.kind) {
      case "conv":
        replace(await step.conv.forward(ctx, h, undefined, upsampleFused(program, i)));
        break;
      case "norm":
        replace(await step.norm.forward(ctx, h, step.act));
        break;
      case "up": {
        if (upsampleFused(program, i + 1)) break;
        const [n, c, hh, ww] = h.shape;
        const up = ctx.alloc([n, c, 2 * hh, 2 * ww]);
        await ctx.k.upsampleNearest2x({ x: h.buf, out: up.buf, planes: n * c, height: hh, width: ww });
        replace(up);
        break;
      }
      case "push":
        skips.push(h);
        break;
      case "residualConv": {
        const skip = skips.pop()!;
        const shortcut = step.shortcut ? await step.shortcut.forward(ctx, skip) : skip;
        const out = await step.conv.forward(ctx, h, shortcut);
        if (shortcut !== skip) ctx.free(shortcut);
        replace(out);
        if (skip !== x && skip !== h) ctx.free(skip);
        break;
      }
      case "global":
        replace(await step.run(ctx, h));
        break;
      case "boundary":
        break;
      case "progress":
        if (options.progress !== false) await ctx.step();
        break;
    }
  }
  return h;
}
