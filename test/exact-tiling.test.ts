// Exact tiling: tiled encode/decode whose output equals the untiled one, with tiles smaller than the image.
import { describe, expect, it } from "vitest";
import { AutoencoderKL } from "../src/index.js";
import { planExact, splitForTiling } from "../src/models/autoencoder-kl/exact-tiling.js";
import type { Program } from "../src/nn/program.js";
import { compare, FIXTURES, loadCase, manifest } from "./helpers/fixtures.js";

/** Budgets: everything stored, only the low-resolution tensors stored, nothing stored (all recomputed). */
const PLANS = { wasm: [256, 0.5, 0], reference: [256] } as const;
const caseNamed = (name: string) => manifest.cases.find((c) => c.name === name)!;

for (const [backend, budgets] of Object.entries(PLANS) as [keyof typeof PLANS, readonly number[]][]) {
  describe(`exact tiling on ${backend} (sdlike, 96×80, tiles of 32 px)`, () => {
    // checkpointMiB 0 stores nothing: every statistic is recomputed from the tiled program's input.
    for (const checkpointMiB of budgets) {
      it(`decode matches the untiled fixture (checkpoints ≤ ${checkpointMiB} MiB)`, async () => {
        const c = caseNamed("sdlike-decode-untiled-big");
        const { input, expected } = loadCase(c);
        const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend });
        try {
          vae.enableTiling({ mode: "exact", checkpointMiB });
          let tiles = 0;
          const got = (await vae.decode(input.z, { onProgress: (p) => (tiles = p.total) })).sample;
          expect(tiles).toBeGreaterThan(3 * 3);
          const { maxAbs, relL2 } = compare(got, expected.sample);
          console.log(
            `exact decode (${checkpointMiB} MiB): max_abs ${maxAbs.toExponential(2)} rel_l2 ${relL2.toExponential(2)}`,
          );
          expect(maxAbs).toBeLessThanOrEqual(c.tolerance.max_abs);
          expect(relL2).toBeLessThanOrEqual(c.tolerance.rel_l2);
        } finally {
          vae.dispose();
        }
      });
      it(`encode matches the untiled fixture (checkpoints ≤ ${checkpointMiB} MiB)`, async () => {
        const c = caseNamed("sdlike-encode-untiled-big");
        const { input, expected } = loadCase(c);
        const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend });
        try {
          vae.enableTiling({ mode: "exact", checkpointMiB });
          const { latentDist } = await vae.encode(input.x);
          for (const [name, t] of [
            ["mean", latentDist.mean],
            ["logvar", latentDist.logvar],
            ["std", latentDist.std],
          ] as const) {
            const { maxAbs, relL2 } = compare(t, expected[name]);
            console.log(
              `exact encode ${name} (${checkpointMiB} MiB): max_abs ${maxAbs.toExponential(2)} rel_l2 ${relL2.toExponential(2)}`,
            );
            expect(maxAbs).toBeLessThanOrEqual(c.tolerance.max_abs);
            expect(relL2).toBeLessThanOrEqual(c.tolerance.rel_l2);
          }
        } finally {
          vae.dispose();
        }
      });
    }
  });
}

describe("exact tiling schedule", () => {
  it("stores checkpoints that fit the budget and recomputes the rest", async () => {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend: "reference" });
    const program = (vae as unknown as { modules: { decodeProgram(): Program } }).modules.decodeProgram();
    // decode: post_quant_conv, conv_in, the mid block and the first up block's resnets run once at latent size;
    // from the first upsample on, tiles
    const { middle, after: ops } = splitForTiling(program);
    expect(middle.filter((s) => s.kind === "global")).toHaveLength(1);
    expect(ops[0].kind).toBe("up");
    const all = planExact(ops, [1, 64, 12, 10], { tileSize: 4, checkpointBytes: 2 ** 30 });
    const none = planExact(ops, [1, 64, 12, 10], { tileSize: 4, checkpointBytes: 0 });
    const norms = ops.filter((o) => o.kind === "norm").length;
    expect(all.filter((p) => p.kind === "stats").length).toBe(norms);
    expect(none.filter((p) => p.kind === "stats").length).toBe(norms);
    expect(none.filter((p) => p.kind === "form").length).toBe(1); // straight to the output
    expect(all.filter((p) => p.kind === "form").length).toBeGreaterThan(10);
    // Without checkpoints every statistics pass starts from the program input.
    expect(none.every((p) => p.from === 0)).toBe(true);
    // With a checkpoint inside each resnet (its input kept for the skip), no convolution runs twice: no
    // statistics pass has one, and the form passes together run each once
    const convsIn = (p: { from: number; to: number }) =>
      ops.slice(p.from, p.to).filter((o) => o.kind === "conv" || o.kind === "residualConv").length;
    const allConvs = convsIn({ from: 0, to: ops.length });
    expect(all.some((p) => p.skip !== undefined)).toBe(true);
    expect(all.filter((p) => p.kind === "stats").every((p) => convsIn(p) === 0)).toBe(true);
    expect(all.filter((p) => p.kind === "form").reduce((a, p) => a + convsIn(p), 0)).toBe(allConvs);
    const plain = planExact(ops, [1, 64, 12, 10], { tileSize: 4, checkpointBytes: 2 ** 30, resnetCheckpoints: false });
    expect(plain.some((p) => p.skip !== undefined)).toBe(false);
    expect(plain.filter((p) => p.kind === "stats").some((p) => convsIn(p) > 0)).toBe(true);
    vae.dispose();
  });

  it("grows the tiles of low-resolution passes while their tensors stay within the top level's", async () => {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend: "reference" });
    const program = (vae as unknown as { modules: { decodeProgram(): Program } }).modules.decodeProgram();
    const { after: ops } = splitForTiling(program);
    const passes = planExact(ops, [1, 64, 12, 10], { tileSize: 2, checkpointBytes: 2 ** 30 });
    // the constant side a 2-latent-pixel tile has at the level entering op `to`
    const ups = (to: number) => ops.slice(0, to).filter((o) => o.kind === "up").length;
    const top = Math.max(...passes.map((p) => ups(p.to)));
    const constant = (to: number) => 2 * 2 ** ups(to);
    for (const p of passes) expect(p.side).toBeGreaterThanOrEqual(constant(p.to));
    // the tiles holding the largest tensors are at the top level and keep the side asked for
    expect(passes.some((p) => ups(p.to) === top && p.side === constant(p.to))).toBe(true);
    // a level below grows, yet still runs in several tiles (so the fixtures test uneven sides)
    const grown = passes.filter((p) => ups(p.to) < top && p.side > constant(p.to));
    expect(grown.length).toBeGreaterThan(0);
    expect(grown.some((p) => p.tiles > 1)).toBe(true);
    vae.dispose();
  });
});
