// The manifest-driven fixture suite: every case in test/fixtures/manifest.json, on every backend available.
import { afterAll, describe, expect, it } from "vitest";
import type { Kernels } from "../src/backends/kernels.js";
import type { BackendChoice } from "../src/backends/select.js";
import { createWasmBackend } from "../src/backends/wasm/index.js";
import { AutoencoderKL, DiagonalGaussianDistribution, type Tensor } from "../src/index.js";
import { compare, FIXTURES, type FixtureCase, loadCase, manifest } from "./helpers/fixtures.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";
import { acquireTestGPU } from "./helpers/webgpu-env.js";

// WebGPU runs on whatever adapter Dawn finds: a GPU, or SwiftShader from Debian's chromium on CPU-only machines.
const gpu = await acquireTestGPU();
if (!gpu.adapter) console.warn(`fixtures on webgpu skipped: ${gpu.reason}`);
const relaxed = enableRelaxedSimd();
if (!relaxed.ok) console.warn(`fixtures on the relaxed-SIMD wasm build skipped: ${relaxed.reason}`);

interface BackendCase {
  label: string;
  backend: BackendChoice;
  /** Kernels built by the test (the model then does not own them). */
  kernels?: () => Promise<Kernels>;
  skip?: string;
}

// Every wasm build (plain and relaxed SIMD) with one thread and with two (ops split across workers).
const wasmCases: BackendCase[] = (["simd", "relaxed-simd"] as const).flatMap((isa) =>
  [1, 2].map((threads) => ({
    label: `wasm ${isa} ×${threads}`,
    backend: "wasm" as const,
    kernels: () => createWasmBackend({ threads, relaxed: isa === "relaxed-simd", parallelThresholdNs: 0 }),
    skip: isa === "relaxed-simd" && !relaxed.ok ? relaxed.reason : undefined,
  })),
);
// And Winograd F(4×4, 3×3) on every 3×3 stride-1 convolution, conv_in (3 channels) included: the default
// keeps it for layers with enough channels, this bounds its error on the whole model.
const winograd4Cases: BackendCase[] = (["simd", "relaxed-simd"] as const).map((isa) => ({
  label: `wasm ${isa} ×1, F(4×4) for every 3×3`,
  backend: "wasm" as const,
  kernels: () => createWasmBackend({ relaxed: isa === "relaxed-simd", winogradMinChannels: 1, winogradTile: 4 }),
  skip: isa === "relaxed-simd" && !relaxed.ok ? relaxed.reason : undefined,
}));
const BACKENDS: BackendCase[] = [
  ...wasmCases,
  ...winograd4Cases,
  { label: "reference", backend: "reference" },
  { label: "webgpu", backend: "webgpu", skip: gpu.adapter ? undefined : gpu.reason },
];

const worst: string[] = [];
afterAll(() => {
  if (worst.length) console.log("fixture errors (max_abs / rel_l2):\n  " + worst.join("\n  "));
});

async function loadModel(c: FixtureCase, backend: BackendChoice, kernels?: Kernels): Promise<AutoencoderKL> {
  const m = manifest.models[c.model];
  if (c.load.single_file) {
    return AutoencoderKL.fromSingleFile(FIXTURES + m.single_file!.path, { config: m.config, backend, kernels });
  }
  return AutoencoderKL.fromPretrained(FIXTURES + m.path, {
    variant: c.load.variant,
    fromFlax: c.load.flax,
    backend,
    kernels,
  });
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
      return {
        z,
        mode: latentDist.mode(),
        kl: latentDist.kl(),
        kl_other: latentDist.kl(other),
        nll: latentDist.nll(z),
      };
    }
  }
}

for (const { label, backend, kernels: makeKernels, skip } of BACKENDS) {
  describe.skipIf(skip !== undefined)(`fixtures on ${label}`, () => {
    for (const c of manifest.cases) {
      it(c.name, async () => {
        const { input, expected } = loadCase(c);
        const kernels = await makeKernels?.();
        const vae = await loadModel(c, backend, kernels);
        try {
          expect(vae.backend).toBe(backend);
          if (c.options.tiling) vae.enableTiling();
          const got = await run(vae, c, input);
          for (const name of c.expected) {
            const { maxAbs, relL2 } = compare(got[name], expected[name]);
            worst.push(`${label} ${c.name}.${name}: ${maxAbs.toExponential(2)} / ${relL2.toExponential(2)}`);
            expect(maxAbs, `${c.name}.${name} max_abs`).toBeLessThanOrEqual(c.tolerance.max_abs);
            expect(relL2, `${c.name}.${name} rel_l2`).toBeLessThanOrEqual(c.tolerance.rel_l2);
          }
        } finally {
          vae.dispose();
          kernels?.dispose();
        }
      });
    }
  });
}
