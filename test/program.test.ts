// The network as a program (src/nn/program.ts): the eager interpreter frees every intermediate it makes,
// reports one progress step per block, and the program's shape is the module tree's (diffusers keys).
import { describe, expect, it } from "vitest";
import type { Kernels } from "../src/backends/kernels.js";
import { AutoencoderKL } from "../src/index.js";
import { splitForTiling } from "../src/models/autoencoder-kl/exact-tiling.js";
import { RunContext } from "../src/nn/context.js";
import { type Program, runProgram } from "../src/nn/program.js";
import { FIXTURES } from "./helpers/fixtures.js";

interface Internals {
  kernels: Kernels;
  modules: {
    encodeProgram(): Program;
    decodeProgram(): Program;
    encoder: { steps: number };
    decoder: { steps: number };
  };
}

describe("network program", async () => {
  const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "reference" });
  const { kernels, modules } = vae as unknown as Internals;

  for (const [name, program, shape, steps] of [
    ["encode", modules.encodeProgram(), [1, 3, 16, 16], modules.encoder.steps],
    ["decode", modules.decodeProgram(), [1, 4, 8, 8], modules.decoder.steps],
  ] as const) {
    it(`${name}: runProgram leaves nothing allocated but its result, and reports ${steps} progress steps`, async () => {
      let reported = 0;
      const ctx = new RunContext(kernels, name, steps, { onProgress: (p) => (reported = p.done) });
      const x = ctx.alloc([...shape]);
      kernels.write(
        x.buf,
        Float32Array.from({ length: x.size }, (_, i) => Math.sin(i)),
      );
      const y = await runProgram(ctx, program, x);
      expect(ctx.liveCount).toBe(2); // x (the caller's) and y
      expect(y.shape).toEqual(name === "encode" ? [1, 8, 8, 8] : [1, 3, 16, 16]);
      ctx.free(x, y);
      expect(ctx.liveCount).toBe(0);
      expect(reported).toBe(steps);
    });
  }

  it("every conv and norm in the programs is a module of the model, named by its diffusers key", () => {
    const keys = new Set((vae as unknown as { parameterShapes(): Map<string, number[]> }).parameterShapes().keys());
    for (const program of [modules.encodeProgram(), modules.decodeProgram()]) {
      for (const s of program) {
        if (s.kind === "conv" || s.kind === "residualConv")
          expect(keys.has(`${s.conv.prefix}.weight`), s.conv.prefix).toBe(true);
        if (s.kind === "norm") expect(keys.has(`${s.norm.prefix}.weight`), s.norm.prefix).toBe(true);
      }
    }
  });

  it("exact tiling cuts the encoder after its last downsampler and the decoder before its first upsample", () => {
    const enc = splitForTiling(modules.encodeProgram());
    expect(enc.after).toHaveLength(0);
    expect(enc.before.filter((s) => s.kind === "conv" && s.conv.stride === 2)).toHaveLength(1);
    expect(enc.middle.some((s) => s.kind === "global")).toBe(true);
    const dec = splitForTiling(modules.decodeProgram());
    expect(dec.before).toHaveLength(0);
    expect(dec.middle.some((s) => s.kind === "up")).toBe(false);
    expect(dec.after[0].kind).toBe("up");
    expect(dec.after.some((s) => s.kind === "global")).toBe(false);
  });
});
