// Slicing, attention processors, fused QKV, progress and cancellation (diffusers parity + our guarantees).
import { describe, expect, it } from "vitest";
import type { DeviceBuffer } from "../src/backends/kernels.js";
import { ReferenceKernels } from "../src/backends/reference/index.js";
import { AbortError, AttnProcessor, AutoencoderKL, type Kernels, Tensor } from "../src/index.js";
import { FusedAttnProcessor, MemoryEfficientAttnProcessor } from "../src/nn/attention.js";
import { compare, FIXTURES, loadCase, manifest } from "./helpers/fixtures.js";

const BACKENDS = ["wasm", "reference"] as const;
const caseNamed = (name: string) => manifest.cases.find((c) => c.name === name)!;

/** Reference kernels that count live buffers, to prove a pass frees what it allocates. */
class CountingKernels extends ReferenceKernels {
  live = new Set<DeviceBuffer>();
  override alloc(n: number): DeviceBuffer {
    const b = super.alloc(n);
    this.live.add(b);
    return b;
  }
  override free(b: DeviceBuffer): void {
    this.live.delete(b);
    super.free(b);
  }
}

for (const backend of BACKENDS) {
  describe(`slicing on ${backend}`, () => {
    for (const name of ["tiny-encode-odd-batch", "tiny-forward-odd-batch"]) {
      it(`${name}: slicing gives identical outputs`, async () => {
        const { input } = loadCase(caseNamed(name));
        const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend });
        try {
          const whole = await vae.forward(input.x);
          vae.enableSlicing();
          const sliced = await vae.forward(input.x);
          expect(sliced.sample.shape).toEqual([2, 3, 30, 46]);
          expect(compare(sliced.sample, whole.sample).maxAbs).toBe(0);
          const e1 = (await vae.encode(input.x)).latentDist.mean;
          vae.disableSlicing();
          const e2 = (await vae.encode(input.x)).latentDist.mean;
          expect(compare(e1, e2).maxAbs).toBe(0);
        } finally {
          vae.dispose();
        }
      });
    }
  });

  describe(`attention processors on ${backend}`, () => {
    it("lists processors by diffusers module path", async () => {
      const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend });
      expect(Object.keys(vae.attnProcessors)).toEqual([
        "encoder.mid_block.attentions.0.processor",
        "decoder.mid_block.attentions.0.processor",
      ]);
      vae.dispose();
    });
    it("every processor and the fused projections give the default's outputs within 1e-5", async () => {
      const c = caseNamed("sdlike-forward");
      const { input, expected } = loadCase(c);
      const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend });
      try {
        const base = (await vae.forward(input.x)).sample;
        expect(compare(base, expected.sample).maxAbs).toBeLessThanOrEqual(c.tolerance.max_abs);
        const variants: [string, () => void][] = [
          ["plain AttnProcessor", () => vae.setAttnProcessor(new AttnProcessor())],
          [
            "memory-efficient by map",
            () =>
              vae.setAttnProcessor(
                Object.fromEntries(Object.keys(vae.attnProcessors).map((k) => [k, new MemoryEfficientAttnProcessor()])),
              ),
          ],
          ["fused QKV", () => vae.fuseQkvProjections()],
        ];
        for (const [label, apply] of variants) {
          apply();
          const got = (await vae.forward(input.x)).sample;
          expect(compare(got, base).maxAbs, label).toBeLessThanOrEqual(1e-5);
        }
        expect(Object.values(vae.attnProcessors).every((p) => p instanceof FusedAttnProcessor)).toBe(true);
        vae.unfuseQkvProjections();
        expect(Object.values(vae.attnProcessors).every((p) => p instanceof MemoryEfficientAttnProcessor)).toBe(true);
        expect(compare((await vae.forward(input.x)).sample, base).maxAbs).toBeLessThanOrEqual(1e-5);
      } finally {
        vae.dispose();
      }
    });
  });
}

describe("processor map validation", () => {
  it("a map that misses a module is rejected by name", async () => {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/tiny", { backend: "reference" });
    expect(() => vae.setAttnProcessor({ "encoder.mid_block.attentions.0.processor": new AttnProcessor() })).toThrow(
      /missing: \[decoder\.mid_block\.attentions\.0\.processor\]/,
    );
    vae.dispose();
  });
});

describe("tiling edge cases", () => {
  it("a last tile too small for the encoder is a clear error, not a crash inside a kernel", async () => {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend: "wasm" });
    vae.enableTiling();
    // tiles of 32 every 24 px: a 74-px-wide image leaves a 2-px sliver at x = 72.
    await expect(vae.encode(Tensor.zeros([1, 3, 32, 74]))).rejects.toThrow(/tiledEncode: x.*width.*2 px.*minimum of 8/);
    vae.dispose();
  });
});

describe("progress and cancellation", () => {
  it("reports every block with done/total, across tiles", async () => {
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { backend: "reference" });
    const { input } = loadCase(caseNamed("sdlike-decode-tiled"));
    const seen: string[] = [];
    vae.enableTiling();
    await vae.decode(input.z, { onProgress: (p) => seen.push(`${p.stage} ${p.done}/${p.total}`) });
    const total = Number(seen[0].split("/")[1]);
    expect(seen.length).toBe(total);
    expect(seen.at(-1)).toBe(`decode ${total}/${total}`);
    expect(total).toBeGreaterThan(7); // several tiles × 7 decoder steps
    vae.dispose();
  });

  it("aborting a decode stops it promptly and releases its memory", async () => {
    const k = new CountingKernels();
    const vae = await AutoencoderKL.fromPretrained(FIXTURES + "models/sdlike", { kernels: k as Kernels });
    const weights = k.live.size;
    const controller = new AbortController();
    let steps = 0;
    const z = new Tensor(new Float32Array(4 * 8 * 8).fill(0.1), [1, 4, 8, 8]);
    const aborted = await vae
      .decode(z, {
        signal: controller.signal,
        onProgress: () => {
          if (++steps === 2) controller.abort();
        },
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    // The exported class, so callers can tell a cancellation from a failure with instanceof.
    expect(aborted).toBeInstanceOf(AbortError);
    expect((aborted as Error).name).toBe("AbortError");
    expect(steps).toBe(2);
    expect(k.live.size).toBe(weights);
    // A signal already aborted stops before any work.
    await expect(vae.encode(Tensor.zeros([1, 3, 16, 16]), { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(
      AbortError,
    );
    expect(k.live.size).toBe(weights);
    // A complete pass leaks nothing either.
    await vae.decode(z);
    expect(k.live.size).toBe(weights);
    vae.dispose();
    expect(k.live.size).toBe(0);
  });
});
