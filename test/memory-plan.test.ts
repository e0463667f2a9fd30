// The memory budget (issue 13): maxMemoryMiB makes the model plan untiled or exact tiling before any work, the
// prediction bounds what the backend really uses, a planned exact run gives the untiled numbers, and a budget
// nothing fits is an error that says what would.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createWasmBackend } from "../src/backends/wasm/index.js";
import { AutoencoderKL, AutoencoderKLError, type CheckpointStorage } from "../src/index.js";
import { fileCheckpointStorage } from "../src/io/checkpoint-files.js";
import { Tensor } from "../src/tensor/tensor.js";
import { compare, FIXTURES, loadCase, manifest } from "./helpers/fixtures.js";

const MiB = 2 ** 20;
const SDLIKE = FIXTURES + "models/sdlike";
const caseNamed = (name: string) => manifest.cases.find((c) => c.name === name)!;

/** A seeded pseudo-random tensor (values in [-1, 1]). */
function noise(shape: number[], seed: number): Tensor {
  const t = Tensor.zeros(shape);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < t.size; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    t.data[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return t;
}

/** The wasm backend's working set of one call: its high-water mark above what loading left. */
async function measured(threads: number, run: (vae: AutoencoderKL) => Promise<unknown>) {
  const kernels = await createWasmBackend({ threads, relaxed: false });
  const vae = await AutoencoderKL.fromPretrained(SDLIKE, { kernels });
  try {
    const loaded = kernels.memoryStats().highWater;
    await run(vae);
    return { vae, working: (kernels.memoryStats().highWater - loaded) / MiB };
  } finally {
    vae.dispose();
    kernels.dispose();
  }
}

describe("memory plan: the prediction bounds the backend's working set (wasm, sdlike model)", () => {
  for (const threads of [1, 2]) {
    for (const [kind, shape] of [
      ["decode", [1, 4, 12, 10]],
      ["decode", [2, 4, 7, 9]],
      ["encode", [1, 3, 96, 80]],
    ] as const) {
      it(`${kind} [${shape.join(", ")}] untiled, ${threads} thread${threads > 1 ? "s" : ""}`, async () => {
        let predicted = 0;
        const { working } = await measured(threads, async (vae) => {
          const plan = await vae.planMemory(kind, shape);
          expect(plan.mode).toBe("untiled");
          predicted = plan.parts.workingMiB;
          const x = noise([...shape], 7);
          if (kind === "decode") await vae.decode(x);
          else await vae.encode(x);
        });
        console.log(
          `  ${kind} [${shape.join(", ")}] ×${threads}: working set ${working.toFixed(3)} MiB, predicted ${predicted} MiB`,
        );
        expect(predicted).toBeGreaterThanOrEqual(working);
        // over-estimates only: the probe sizes scratch for every thread and adds a 5% margin
        expect(predicted).toBeLessThanOrEqual(working * 1.25 + 0.25);
      });
    }
  }
});

describe("memory plan: a budget below the untiled peak runs exact tiling with the untiled numbers", () => {
  it("decode under a budget below untiled picks exact tiling, stays within its prediction, equals untiled", async () => {
    // a larger latent than the fixture's, run first, where exact tiling saves more than the collector's lag costs
    const kernels0 = await createWasmBackend({ threads: 1 });
    const big = await AutoencoderKL.fromPretrained(SDLIKE, { kernels: kernels0 });
    try {
      const z = noise([1, 4, 40, 36], 5);
      const untiled = await big.planMemory("decode", z.shape);
      const budget = untiled.peakMiB - 1;
      const plan = await big.planMemory("decode", z.shape, { maxMemoryMiB: budget });
      expect(plan.mode).toBe("exact");
      const loaded = kernels0.memoryStats().highWater;
      const got = (await big.decode(z, { maxMemoryMiB: budget })).sample;
      const working = (kernels0.memoryStats().highWater - loaded) / MiB;
      const want = (await big.decode(z, { maxMemoryMiB: null })).sample;
      const { maxAbs } = compare(got, want);
      console.log(
        `  [1, 4, 40, 36] under ${budget.toFixed(1)} MiB: ${plan.tileSize}-px tiles, checkpoints ≤ ${plan.checkpointMiB} MiB; working set ${working.toFixed(2)} MiB (predicted ${plan.parts.workingMiB}, untiled ${untiled.parts.workingMiB}); max |exact − untiled| ${maxAbs.toExponential(2)}`,
      );
      expect(working).toBeLessThanOrEqual(plan.parts.workingMiB);
      expect(maxAbs).toBeLessThanOrEqual(5e-5);
    } finally {
      big.dispose();
      kernels0.dispose();
    }
  });

  it("decode of the fixture latent under the least budget that fits matches the fixture", async () => {
    const c = caseNamed("sdlike-decode-untiled-big");
    const { input, expected } = loadCase(c);
    const kernels = await createWasmBackend({ threads: 1 });
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { kernels });
    try {
      // the least budget any plan fits: exact tiling on Node ≥ 21 (on Node 20 the collector's lag can make untiled the smallest)
      const untiled = await vae.planMemory("decode", input.z.shape);
      const smallest = await vae
        .planMemory("decode", input.z.shape, { maxMemoryMiB: 1 })
        .catch((e: Error) => +/at least (\d+) MiB/.exec(e.message)![1]);
      const budget = typeof smallest === "number" ? smallest : 0;
      const plan = await vae.planMemory("decode", input.z.shape, { maxMemoryMiB: budget });
      expect(plan.peakMiB).toBeLessThanOrEqual(budget);
      expect(plan.workRatio).toBeGreaterThanOrEqual(1);
      const loaded = kernels.memoryStats().highWater;
      let tiles = 0;
      const got = (await vae.decode(input.z, { maxMemoryMiB: budget, onProgress: (p) => (tiles = p.total) })).sample;
      const working = (kernels.memoryStats().highWater - loaded) / MiB;
      console.log(
        `  budget ${budget.toFixed(2)} MiB: ${plan.tileSize}-px tiles, checkpoints ≤ ${plan.checkpointMiB} MiB, ${tiles} tiles; working set ${working.toFixed(3)} MiB (predicted ${plan.parts.workingMiB}, untiled ${untiled.parts.workingMiB})`,
      );
      if (plan.mode === "exact") expect(tiles).toBeGreaterThan(1);
      expect(working).toBeLessThanOrEqual(plan.parts.workingMiB);
      const { maxAbs, relL2 } = compare(got, expected.sample);
      expect(maxAbs).toBeLessThanOrEqual(c.tolerance.max_abs);
      expect(relL2).toBeLessThanOrEqual(c.tolerance.rel_l2);
    } finally {
      vae.dispose();
      kernels.dispose();
    }
  });

  it("the model's budget applies to every call; a call's own (or null) overrides it", async () => {
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { backend: "wasm", threads: 1, maxMemoryMiB: 4096 });
    try {
      expect(vae.maxMemoryMiB).toBe(4096);
      expect((await vae.planMemory("decode", [1, 4, 12, 10])).budgetMiB).toBe(4096);
      expect((await vae.planMemory("decode", [1, 4, 12, 10], { maxMemoryMiB: null })).budgetMiB).toBeNull();
      vae.maxMemoryMiB = 1;
      await expect(vae.decode(noise([1, 4, 12, 10], 1))).rejects.toThrow(/maxMemoryMiB 1 is too small/);
      const z = noise([1, 4, 6, 5], 3);
      const free = (await vae.decode(z, { maxMemoryMiB: null })).sample;
      vae.maxMemoryMiB = null;
      expect(compare(free, (await vae.decode(z)).sample).maxAbs).toBe(0);
    } finally {
      vae.dispose();
    }
  });
});

describe("memory plan: bad budgets", () => {
  it("a budget nothing fits names the smallest plan and what to raise", async () => {
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { backend: "wasm", threads: 1 });
    try {
      const err = await vae.decode(noise([1, 4, 12, 10], 1), { maxMemoryMiB: 10 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AutoencoderKLError);
      expect((err as Error).message).toMatch(
        /^decode: maxMemoryMiB: maxMemoryMiB 10 is too small for an input of \[1, 4, 12, 10\]: the smallest plan is (untiled|exact tiling, \d+-px tiles, checkpointMiB \d+): [\d.]+ MiB \(runtime [\d.]+, weights [\d.]+, working set [\d.]+, host [\d.]+\); untiled is untiled: [\d.]+ MiB .*Raise the budget to at least \d+ MiB/,
      );
    } finally {
      vae.dispose();
    }
  });

  for (const bad of [0, -5, Number.NaN, Number.POSITIVE_INFINITY, "400"]) {
    it(`maxMemoryMiB ${String(bad)} is refused where it is given`, async () => {
      const rule = /must be a positive number of MiB/;
      await expect(
        AutoencoderKL.fromPretrained(SDLIKE, { backend: "reference", maxMemoryMiB: bad as number }),
      ).rejects.toThrow(new RegExp(`options\\.maxMemoryMiB.*${rule.source}`));
      const vae = await AutoencoderKL.fromPretrained(SDLIKE, { backend: "reference" });
      try {
        expect(() => {
          vae.maxMemoryMiB = bad as number;
        }).toThrow(AutoencoderKLError);
        await expect(vae.decode(noise([1, 4, 4, 4], 1), { maxMemoryMiB: bad as number })).rejects.toThrow(
          /decode: options\.maxMemoryMiB/,
        );
        await expect(vae.planMemory("decode", [1, 4, 4, 4], { maxMemoryMiB: bad as number })).rejects.toThrow(
          /planMemory: maxMemoryMiB/,
        );
      } finally {
        vae.dispose();
      }
    });
  }

  it("planMemory checks its kind and shape like encode and decode check their inputs", async () => {
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { backend: "reference" });
    try {
      await expect(vae.planMemory("forward" as "decode", [1, 4, 4, 4])).rejects.toThrow(/planMemory: kind/);
      await expect(vae.planMemory("decode", [1, 3, 4, 4])).rejects.toThrow(/planMemory: shape.*channels/);
      await expect(vae.planMemory("decode", [4, 4])).rejects.toThrow(/planMemory: shape.*rank 4/);
    } finally {
      vae.dispose();
    }
  });
});

describe("checkpoint storage: exact tiling keeps its checkpoints in temporary files", () => {
  it("gives the in-memory result bit for bit, leaves no file behind, and lets the planner store every checkpoint", async () => {
    const dir = mkdtempSync(join(tmpdir(), "akl-ckpt-test-"));
    let areas = 0,
      written = 0;
    const files = fileCheckpointStorage(dir);
    // counts what goes through the storage, so the test knows the files were used
    const counting: CheckpointStorage = {
      open() {
        areas++;
        const a = files.open();
        return { ...a, write: (d) => ((written += d.length), a.write(d)) };
      },
    };
    const vae = await AutoencoderKL.fromPretrained(SDLIKE, { backend: "wasm", threads: 1 });
    try {
      const z = noise([1, 4, 20, 18], 9);
      vae.enableTiling({ mode: "exact", tileSampleMinSize: 32 });
      const inMemory = (await vae.decode(z)).sample;
      vae.checkpointStorage = counting;
      const stored = (await vae.decode(z)).sample;
      expect(areas).toBe(1);
      expect(written).toBeGreaterThan(z.size * 100);
      expect(compare(stored, inMemory).maxAbs).toBe(0);
      expect(readdirSync(dir)).toEqual([]);
      vae.disableTiling();
      expect(compare(stored, (await vae.decode(z)).sample).maxAbs).toBeLessThanOrEqual(5e-5);
      // the planner may now keep every checkpoint in the files: never more work than without them
      const withFiles = await vae.planMemory("decode", z.shape, {
        maxMemoryMiB: (await vae.planMemory("decode", z.shape)).peakMiB - 1,
      });
      vae.checkpointStorage = null;
      const without = await vae.planMemory("decode", z.shape, { maxMemoryMiB: withFiles.budgetMiB });
      expect(withFiles.workRatio).toBeLessThanOrEqual(without.workRatio);
    } finally {
      vae.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a checkpointStorage without open() is refused by name", async () => {
    await expect(
      AutoencoderKL.fromPretrained(SDLIKE, { backend: "reference", checkpointStorage: {} as CheckpointStorage }),
    ).rejects.toThrow(/options\.checkpointStorage: must be a CheckpointStorage/);
  });
});
