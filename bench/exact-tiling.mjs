// Exact tiling vs untiled decode on the SD-1.x VAE shape (issue 6): seconds, peak RSS, and the max abs
// difference between the two outputs (exact mode must give the untiled output).
//
//   node bench/exact-tiling.mjs [--size 512] [--tile <size/2, at most 512>] [--modes untiled,exact[,blend]]
//                               [--threads <cores>] [--isa relaxed|simd] [--checkpoint-mib 256]
//                               [--weights auto|random|DIR] [--runs 1] [--json out.json]
//
// --size is the image side: the latent is 1×4×(size/8)×(size/8). Each mode runs in its own child process:
// load, then --runs timed decodes (default 1, no warm-up: a 1024² decode is about 10.5 TFLOP, minutes per
// run at tens of GFLOP/s; run the 1024 case once, on an otherwise idle machine). The outputs go to temp
// files and are compared here. `peak RSS` = VmHWM after a reset right after loading (the decode, with the
// resident weights); `process` = the child's whole peak. The wasm backend never returns WebAssembly
// memory to the system, so the peaks are the high-water marks of the decode itself.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  countGflop,
  DIST,
  fmt,
  loadModel,
  machineInfo,
  maxRssMb,
  median,
  parseArgs,
  RELAXED_FLAG,
  randn,
  resetHwm,
  runChild,
  vmHwmMb,
} from "./common.mjs";

const SELF = fileURLToPath(import.meta.url);

async function child(spec) {
  const api = await import(pathToFileURL(path.join(DIST, "index.js")).href);
  const { createWasmBackend } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
  const kernels = await createWasmBackend({ threads: spec.threads, relaxed: spec.isa === "relaxed" });
  const t0 = performance.now();
  const { vae, weights } = await loadModel(api, { kernels }, { weights: spec.weights });
  const loadS = (performance.now() - t0) / 1e3;
  const loadPeak = Math.max(vmHwmMb() ?? 0, maxRssMb());
  if (spec.mode !== "untiled") {
    vae.enableTiling({ mode: spec.mode, tileSampleMinSize: spec.tile, checkpointMiB: spec.checkpointMiB });
  }
  const side = spec.size / 8;
  const z = new api.Tensor(randn(4 * side * side, 1), [1, 4, side, side]);
  globalThis.gc?.();
  const hwmReset = resetHwm();
  const times = [];
  let y;
  for (let i = 0; i < spec.runs; i++) {
    const t = performance.now();
    y = (await vae.decode(z)).sample;
    times.push((performance.now() - t) / 1e3);
  }
  writeFileSync(spec.out, new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  const res = {
    mode: spec.mode,
    size: spec.size,
    tile: spec.mode === "untiled" ? null : spec.tile,
    checkpoint_mib: spec.checkpointMiB,
    description: vae.backendDescription,
    weights,
    load_s: loadS,
    runs: times,
    median_s: median(times),
    peak_rss_mb: hwmReset ? vmHwmMb() : null,
    peak_rss_process_mb: Math.max(loadPeak, maxRssMb(), vmHwmMb() ?? 0),
    wasm_memory_mb: kernels.memory.buffer.byteLength / 2 ** 20,
    out_dims: y.shape,
  };
  vae.dispose();
  kernels.dispose();
  return res;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const size = +(args.size ?? 512);
  if (!Number.isInteger(size) || size < 64 || size % 64)
    throw new Error(`--size must be a multiple of 64, got ${args.size}`);
  const tile = +(args.tile ?? Math.min(512, size / 2));
  const modes = String(args.modes ?? "untiled,exact").split(",");
  const threads = +(args.threads ?? os.availableParallelism());
  const isa = args.isa ?? "relaxed";
  const { wasmRelaxedSimdSupported } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
  const flags = ["--expose-gc", ...(isa === "relaxed" && !wasmRelaxedSimdSupported() ? [RELAXED_FLAG] : [])];
  const machine = machineInfo();
  const gflop = countGflop("decode", size / 8, size / 8);
  console.log(
    `machine: ${machine.cpu}, ${machine.logicalCores} cores, node ${machine.node}, load average ${machine.loadavg.join(" ")}`,
  );
  console.log(
    `decode 1×4×${size / 8}×${size / 8} → ${size}², ${gflop.toFixed(0)} GFLOP untiled; tile ${tile}, wasm ${isa}, ${threads} threads`,
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), "aekl-exact-"));
  /** @type {any[]} */
  const results = [];
  try {
    for (const mode of modes) {
      const spec = {
        mode,
        size,
        tile,
        threads,
        isa,
        runs: +(args.runs ?? 1),
        checkpointMiB: +(args.checkpointMib ?? 256),
        weights: args.weights ?? "auto",
        out: path.join(dir, `${mode}.f32`),
      };
      const t0 = Date.now();
      try {
        const r = await runChild(SELF, ["--child", JSON.stringify(spec)], { flags });
        results.push(r);
        console.log(
          `  ${mode.padEnd(8)} ${fmt(r.median_s, 1).padStart(7)} s (${fmt(gflop / r.median_s, 1)} untiled-GFLOP/s)  peak RSS ${fmt(r.peak_rss_mb, 0)} MB` +
            ` (process ${fmt(r.peak_rss_process_mb, 0)} MB, wasm memory ${fmt(r.wasm_memory_mb, 0)} MB)  [${((Date.now() - t0) / 1e3).toFixed(0)} s]`,
        );
      } catch (e) {
        console.log(`  ${mode}: FAILED ${e.message}`);
        results.push({ mode, size, error: e.message.slice(0, 2000) });
      }
    }
    const base = results.find((r) => r.mode === "untiled" && !r.error);
    if (base) {
      const a = new Float32Array(readFileSync(path.join(dir, "untiled.f32")).buffer.slice(0));
      for (const r of results) {
        if (r.mode === "untiled" || r.error) continue;
        const b = new Float32Array(readFileSync(path.join(dir, `${r.mode}.f32`)).buffer.slice(0));
        let m = 0;
        for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        r.max_abs_diff_vs_untiled = m;
        r.rss_ratio_untiled_over_mode = base.peak_rss_mb && r.peak_rss_mb ? base.peak_rss_mb / r.peak_rss_mb : null;
        console.log(
          `  ${r.mode} vs untiled: max |diff| = ${m.toExponential(2)}, peak RSS untiled/${r.mode} = ${fmt(r.rss_ratio_untiled_over_mode)}×, time ${r.mode}/untiled = ${fmt(r.median_s / base.median_s)}×`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    "\n| size | mode | tile | seconds | peak RSS MB (decode / process) | max abs diff vs untiled |\n|---|---|---|---|---|---|",
  );
  for (const r of results) {
    console.log(
      r.error
        ? `| ${size}² | ${r.mode} | | failed: ${r.error.split("\n")[0].slice(0, 120)} | | |`
        : `| ${size}² | ${r.mode} | ${r.tile ?? "—"} | ${fmt(r.median_s, 1)} | ${fmt(r.peak_rss_mb, 0)} / ${fmt(r.peak_rss_process_mb, 0)} | ${r.max_abs_diff_vs_untiled === undefined ? "—" : r.max_abs_diff_vs_untiled.toExponential(2)} |`,
    );
  }
  if (args.json)
    writeFileSync(args.json, JSON.stringify({ machine, command: process.argv.slice(1).join(" "), results }, null, 1));
}

if (process.argv[2] === "--child") {
  const r = await child(JSON.parse(process.argv[3]));
  console.log("RESULT " + JSON.stringify(r));
  process.exit(0);
} else {
  try {
    await main();
  } catch (e) {
    console.error(`exact-tiling: ${e.message}`);
    process.exit(1);
  }
}
