// examples/cloudflare-worker under load in workerd (miniflare, listening on 127.0.0.1 only): one 256×256
// decode, then 200 POSTs of latents, 8 at a time; every answer must be the PNG this Node makes from the
// same latents on the same instruction set. Reports time and memory against Workers' 128 MB per isolate.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { createWasmBackend } from "../src/backends/wasm/index.js";
import { writePng } from "../src/io/image/index.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl/autoencoder-kl.js";
import { Tensor } from "../src/tensor/tensor.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";
import { bundle, DEMO, findMiniflareNode, freshPackage, itWith, ROOT, run, scratch } from "./helpers/runtimes.js";
import { fixedLatent } from "./runtimes/probe.mjs";

const REQUESTS = 200;
const CONCURRENCY = 8;
/** Distinct request bodies: 8×8 latents (64×64 images), cycled through. */
const SEEDS = [1, 2, 3, 4];
/** The one large request: 32×32 latents → 256×256, the example's largest. */
const BIG = 32;
/** Workers' memory limit per isolate. */
const LIMIT_MIB = 128;

let tmp: ReturnType<typeof scratch>;
beforeAll(() => {
  tmp = scratch("worker");
});
afterAll(() => tmp?.cleanup());

/** The expected PNG of each latent, made here with the given instruction set on one thread. */
async function expectedPngs(isa: "simd" | "relaxed-simd", latents: Tensor[]): Promise<Uint8Array[]> {
  const kernels = await createWasmBackend({ relaxed: isa === "relaxed-simd", threads: 1 });
  const vae = await AutoencoderKL.fromPretrained(DEMO, { kernels });
  try {
    const out: Uint8Array[] = [];
    for (const z of latents) out.push(await writePng((await vae.decode(z)).sample));
    return out;
  } finally {
    vae.dispose();
    kernels.dispose();
  }
}

describe("examples/cloudflare-worker in workerd", () => {
  itWith(
    findMiniflareNode(),
    `answers ${REQUESTS} requests, ${CONCURRENCY} at a time, each one correct, within Workers' memory`,
    async (node) => {
      const dir = join(tmp.dir, "worker");
      mkdirSync(join(dir, "public", "model"), { recursive: true });
      writeFileSync(join(dir, "worker.mjs"), await bundle(join(ROOT, "test", "runtimes", "worker-memory.mjs"), "esm"));
      for (const f of ["kernels-simd.wasm", "kernels-relaxed.wasm"]) copyFileSync(join(ROOT, "build", f), join(dir, f));
      for (const f of ["config.json", "diffusion_pytorch_model.safetensors"])
        copyFileSync(join(DEMO, f), join(dir, "public", "model", f));
      const pkg = await freshPackage(join(tmp.dir, "pkg"));

      const small = SEEDS.map((seed) => fixedLatent(Tensor, [1, 16, 8, 8], seed) as Tensor);
      const big = fixedLatent(Tensor, [1, 16, BIG, BIG], 99) as Tensor;
      const latents = [...small, big];
      const files = latents.map((z, i) => {
        const f = join(tmp.dir, `latents-${i}.safetensors`);
        writeFileSync(f, writeSafetensors({ latents: z }));
        return f;
      });
      const isas: Array<"simd" | "relaxed-simd"> = enableRelaxedSimd().ok ? ["simd", "relaxed-simd"] : ["simd"];
      const expected: Record<string, string[]> = {};
      for (const isa of isas) {
        expected[isa] = (await expectedPngs(isa, latents)).map((png, i) => {
          const f = join(tmp.dir, `expected-${isa}-${i}.png`);
          writeFileSync(f, png);
          return f;
        });
      }
      const spec = {
        index: pkg.index,
        bodies: files.slice(0, SEEDS.length),
        expected: Object.fromEntries(isas.map((isa) => [isa, expected[isa].slice(0, SEEDS.length)])),
        big: {
          body: files[SEEDS.length],
          expected: Object.fromEntries(isas.map((isa) => [isa, expected[isa][SEEDS.length]])),
        },
        requests: REQUESTS,
        concurrency: CONCURRENCY,
      };
      writeFileSync(join(tmp.dir, "spec.json"), JSON.stringify(spec));

      const r = await run(
        node,
        [
          join(ROOT, "test", "runtimes", "workerd-host.mjs"),
          dir,
          join(dir, "public"),
          "load",
          join(tmp.dir, "spec.json"),
        ],
        { timeoutMs: 240_000 },
      );
      if (r.code !== 0) throw new Error(`workerd host exited ${r.code}: ${r.stderr}`);
      const report = JSON.parse(r.stdout.toString("utf8").trim().split("\n").pop()!);
      const m = report.memory;
      const mib = (x: number) => `${x.toFixed(1)} MiB`;
      const iso = m.isolate;
      // V8's ArrayBuffer count leaves the WebAssembly memory out: the isolate holds both
      const isolateMiB = iso.peak.totalMiB + report.wasmMemoryMiB;
      console.log(
        `workerd (${report.isa.join(", ")}): ${report.requests} requests, ${report.maxInFlight} in flight at most, ` +
          `${report.correct} correct (${report.exact} byte-identical PNGs) in ${(report.loadMs / 1000).toFixed(1)} s ` +
          `(${(report.requests / (report.loadMs / 1000)).toFixed(1)}/s); one 256×256 decode ${report.big.ms} ms\n` +
          `  Worker isolate: at most ${mib(isolateMiB)} = WebAssembly memory ${mib(report.wasmMemoryMiB)} + peak of JS heap ` +
          `${mib(iso.peak.jsHeapMiB)} and ArrayBuffers ${mib(iso.peak.backingStoresMiB)} (${mib(iso.atEnd.totalMiB)} at the end, ` +
          `not yet collected); limit ${LIMIT_MIB} MB = ${mib((LIMIT_MIB * 1e6) / 2 ** 20)}\n` +
          `  workerd process RSS (runtime, all its workers, allocator slack): idle ${mib(m.baseline.rssMiB)}, ` +
          `after the 256×256 decode ${mib(m.afterBig.rssMiB)}, after the load ${mib(m.afterLoad.rssMiB)}, peak ${mib(m.afterLoad.peakMiB)}`,
      );

      expect(report.usageOk).toBe(true);
      expect(report.badRequest.status).toBe(400);
      expect(report.badRequest.text).toMatch(/request body/);
      expect(report.big).toMatchObject({ ok: true });
      expect(report.failures).toEqual([]);
      expect(report.correct).toBe(REQUESTS);
      expect(report.maxInFlight).toBe(CONCURRENCY);
      // what Workers count against the limit (JS heap and buffers sampled every 25 ms from before the model loaded)
      expect(report.wasmMemoryMiB).toBeGreaterThan(0);
      expect(isolateMiB).toBeLessThan((LIMIT_MIB * 1e6) / 2 ** 20);
    },
    300_000,
  );
});
