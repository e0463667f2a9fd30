// Decode under a memory budget (issue 13) on the SD-1.x VAE shape: the decoder alone, loaded from the peers'
// weights saved as an fp16 diffusers folder, weights kept as f16 or widened to f32, untiled or planned under
// maxMemoryMiB. Per run: the plan, seconds, the process's whole peak RSS (load included), WebAssembly memory
// and its high-water mark, and the max abs difference from the untiled decode of the same size.
//
//   node bench/memory-budget.mjs [--sizes 512,1024] [--budgets 512:400,1024:512] [--weight-dtype f16|f32|both]
//                                [--threads 2] [--isa relaxed|simd] [--storage files|memory] [--json out.json]
//
// --storage files (default) lets the planner keep exact tiling's checkpoints in temporary files, as the CLI
// does; memory keeps them in the process (recomputing what does not fit).
//
// Each run is its own process (`node --expose-gc`), started fresh: peak RSS is the process's maxRSS. The
// latent is seeded N(0, 1). Run on an otherwise idle machine; one decode per configuration.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  DIST,
  fmt,
  machineInfo,
  maxRssMb,
  PEERS_DIR,
  PEERS_WEIGHTS,
  parseArgs,
  RELAXED_FLAG,
  randn,
  runChild,
  vmHwmMb,
} from "./common.mjs";

const SELF = fileURLToPath(import.meta.url);
const FP16_DIR = path.join(PEERS_DIR, "onnx", "diffusers-fp16");

async function child(spec) {
  const api = await import(pathToFileURL(path.join(DIST, "index.js")).href);
  const { fileCheckpointStorage } = await import(pathToFileURL(path.join(DIST, "node.js")).href);
  const t0 = performance.now();
  const vae = await api.AutoencoderKL.fromPretrained(FP16_DIR, {
    variant: "fp16",
    components: "decoder",
    weightDtype: spec.weightDtype,
    backend: "wasm",
    threads: spec.threads,
    ...(spec.storage === "files" ? { checkpointStorage: fileCheckpointStorage() } : {}),
  });
  const loadS = (performance.now() - t0) / 1e3;
  const kernels = /** @type {any} */ (vae).kernels;
  const side = spec.size / 8;
  const z = new api.Tensor(randn(4 * side * side, 1), [1, 4, side, side]);
  const plan = await vae.planMemory("decode", z.shape, { maxMemoryMiB: spec.budget });
  globalThis.gc?.();
  // where the process peak comes from: sampled between kernels (the decode awaits every op)
  const at = { rss: 0, arrayBuffers: 0, heapUsed: 0, wasm: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > at.rss)
      Object.assign(at, {
        rss: m.rss,
        arrayBuffers: m.arrayBuffers,
        heapUsed: m.heapUsed,
        wasm: kernels.memoryStats().highWater,
      });
  };
  const timer = setInterval(sample, 20);
  const t = performance.now();
  const y = (await vae.decode(z, { maxMemoryMiB: spec.budget, onProgress: sample })).sample;
  const seconds = (performance.now() - t) / 1e3;
  clearInterval(timer);
  writeFileSync(spec.out, new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  const stats = kernels.memoryStats();
  const res = {
    size: spec.size,
    budget_mib: spec.budget,
    weight_dtype: spec.weightDtype,
    description: vae.backendDescription,
    plan,
    load_s: loadS,
    seconds,
    peak_rss_process_mib: Math.max(maxRssMb(), vmHwmMb() ?? 0),
    wasm_memory_mib: stats.bytes / 2 ** 20,
    wasm_high_water_mib: stats.highWater / 2 ** 20,
    // at the highest RSS sampled: JS array buffers (host tensors), JS heap, wasm high-water (MiB)
    at_peak_sample_mib: Object.fromEntries(Object.entries(at).map(([k, v]) => [k, Math.round(v / 2 ** 20)])),
  };
  vae.dispose();
  return res;
}

/** The peers' fp32 diffusers folder, saved once as an fp16 variant (what SD repositories ship). */
async function prepareFp16() {
  if (existsSync(path.join(FP16_DIR, "diffusion_pytorch_model.fp16.safetensors"))) return;
  if (!existsSync(path.join(PEERS_WEIGHTS, "config.json")))
    throw new Error(`no peers' weights at ${PEERS_WEIGHTS}: run ../shared/peers/setup.sh first`);
  const api = await import(pathToFileURL(path.join(DIST, "index.js")).href);
  const vae = await api.AutoencoderKL.fromPretrained(PEERS_WEIGHTS, { backend: "reference" });
  await vae.savePretrained(FP16_DIR, { variant: "fp16" });
  vae.dispose();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const sizes = String(args.sizes ?? "512,1024")
    .split(",")
    .map(Number);
  /** @type {[number, number][]} size and budget pairs */
  const budgets = String(args.budgets ?? "512:400,1024:512")
    .split(",")
    .map((p) => /** @type {[number, number]} */ (p.split(":").map(Number)));
  const dtypes = (args.weightDtype ?? "f16") === "both" ? ["f32", "f16"] : [args.weightDtype ?? "f16"];
  const threads = +(args.threads ?? 2);
  const storage = args.storage ?? "files";
  const isa = args.isa ?? "relaxed";
  const { wasmRelaxedSimdSupported } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
  const flags = ["--expose-gc", ...(isa === "relaxed" && !wasmRelaxedSimdSupported() ? [RELAXED_FLAG] : [])];
  const machine = machineInfo();
  console.log(
    `machine: ${machine.cpu}, ${machine.logicalCores} cores, node ${machine.node}, load ${machine.loadavg.join(" ")}`,
  );
  await prepareFp16();
  const dir = mkdtempSync(path.join(os.tmpdir(), "aekl-budget-"));
  const results = [];
  try {
    for (const size of sizes) {
      let reference = null;
      const runs = [];
      for (const weightDtype of dtypes) {
        runs.push({ weightDtype, budget: null });
        for (const [s, b] of budgets) if (s === size) runs.push({ weightDtype, budget: b });
      }
      for (const run of runs) {
        const out = path.join(dir, `${size}-${run.weightDtype}-${run.budget}.bin`);
        const spec = { size, threads, out, storage, ...run };
        console.log(`decode ${size}², ${run.weightDtype} weights, budget ${run.budget ?? "none"} …`);
        const r = await runChild(SELF, ["--child", JSON.stringify(spec)], { flags });
        const y = new Float32Array(readFileSync(out).buffer.slice(0));
        /** @type {Float32Array} */
        const ref = reference ?? y;
        if (reference === null && run.budget === null) reference = y;
        let diff = 0;
        for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i] - ref[i]));
        r.max_abs_diff_vs_untiled = diff;
        results.push(r);
        const p = r.plan;
        console.log(
          `  ${p.mode}${p.mode === "exact" ? ` (${p.tileSize * 8}-px tiles, ${p.storedCheckpoints ? "checkpoints in files" : `checkpoints ≤ ${p.checkpointMiB} MiB`}, work ≤ ${p.workRatio}×)` : ""}: ` +
            `${fmt(r.seconds, 1)} s, peak RSS ${fmt(r.peak_rss_process_mib, 0)} MiB (predicted ${fmt(p.peakMiB, 0)}), ` +
            `wasm ${fmt(r.wasm_memory_mib, 0)} MiB (high-water ${fmt(r.wasm_high_water_mib, 0)}), max |diff| ${diff.toExponential(2)}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    "\n| size | weights | budget MiB | plan | seconds | peak RSS MiB (predicted) | wasm memory MiB (high-water) | max abs diff vs untiled |\n|---|---|---|---|---|---|---|---|",
  );
  for (const r of results) {
    const p = r.plan;
    const how =
      p.mode === "exact"
        ? `exact, ${p.tileSize * 8}-px tiles, ${p.storedCheckpoints ? "checkpoints in files" : `ckpt ≤ ${p.checkpointMiB} MiB`}`
        : p.mode;
    console.log(
      `| ${r.size}² | ${r.weight_dtype} | ${r.budget_mib ?? "—"} | ${how} | ${fmt(r.seconds, 1)} | ${fmt(r.peak_rss_process_mib, 0)} (${fmt(p.peakMiB, 0)}) | ${fmt(r.wasm_memory_mib, 0)} (${fmt(r.wasm_high_water_mib, 0)}) | ${r.budget_mib === null ? "—" : r.max_abs_diff_vs_untiled.toExponential(2)} |`,
    );
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ machine, threads, isa, storage, results }, null, 2));
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") {
  const res = await child(JSON.parse(argv[1]));
  console.log(`RESULT ${JSON.stringify(res)}`);
} else {
  await main();
}
