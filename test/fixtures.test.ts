// The manifest-driven fixture suite: every case in test/fixtures/manifest.json, on every backend available.
import { afterAll, describe, expect, it } from "vitest";
import { AutoencoderKL, DiagonalGaussianDistribution, Tensor } from "../src/index.js";
import type { BackendChoice } from "../src/backends/select.js";
import { FIXTURES, compare, loadCase, manifest, type FixtureCase } from "./helpers/fixtures.js";

import { acquireTestGPU } from "./helpers/webgpu-env.js";

// WebGPU runs on whatever adapter Dawn finds: a GPU, or SwiftShader from Debian's chromium on CPU-only machines.
const gpu = await acquireTestGPU();
if (!gpu.adapter) console.warn(`fixtures on webgpu skipped: ${gpu.reason}`);
const BACKENDS: BackendChoice[] = ["wasm", "reference", "webgpu"];

const worst: string[] = [];
afterAll(() => {
  if (worst.length) console.log("fixture errors (max_abs / rel_l2):\n  " + worst.join("\n  "));
});

async function loadModel(c: FixtureCase, backend: BackendChoice): Promise<AutoencoderKL> {
  const m = manifest.models[c.model];
  if (c.load.single_file) {
    return AutoencoderKL.fromSingleFile(FIXTURES + m.single_file!.path, { config: m.config, backend });
  }
  return AutoencoderKL.fromPretrained(FIXTURES + m.path, { variant: c.load.variant, fromFlax: c.load.flax, backend });
}

async function run(vae: AutoencoderKL, c: FixtureCase, input: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  switch (c.op) {
    case "encode": {
      const { latentDist } = await vae.encode(input.x);
      return { mean: latentDist.mean, logvar: latentDist.logvar, std: latentDist.std };
    }
    case "decode":
      return { sample: (await vae.decode(input.z)).sample };
    case "forward":
      return { sample: (await vae.forward(input.x, { samplePosterior: c.options.sample_posterior ?? false })).sample };
    case "posterior": {
      const { latentDist } = await vae.encode(input.x);
      const other = new DiagonalGaussianDistribution(input.other_mean, input.other_logvar);
      const z = latentDist.sample({ noise: input.eps });
      return { z, mode: latentDist.mode(), kl: latentDist.kl(), kl_other: latentDist.kl(other), nll: latentDist.nll(z) };
    }
  }
}

for (const backend of BACKENDS) {
  describe.skipIf(backend === "webgpu" && !gpu.adapter)(`fixtures on ${backend}`, () => {
    for (const c of manifest.cases) {
      it(c.name, async () => {
        const { input, expected } = loadCase(c);
        const vae = await loadModel(c, backend);
        try {
          expect(vae.backend).toBe(backend);
          if (c.options.tiling) vae.enableTiling();
          const got = await run(vae, c, input);
          for (const name of c.expected) {
            const { maxAbs, relL2 } = compare(got[name], expected[name]);
            worst.push(`${backend} ${c.name}.${name}: ${maxAbs.toExponential(2)} / ${relL2.toExponential(2)}`);
            expect(maxAbs, `${c.name}.${name} max_abs`).toBeLessThanOrEqual(c.tolerance.max_abs);
            expect(relL2, `${c.name}.${name} rel_l2`).toBeLessThanOrEqual(c.tolerance.rel_l2);
          }
        } finally {
          vae.dispose();
        }
      });
    }
  });
}
