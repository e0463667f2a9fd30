// Benchmarks of autoencoderkl on the SD-1.x VAE shape (runs against dist/: `npm run build` first, or `npm run bench`).
//
//   node bench/run.mjs [--backend wasm|webgpu|reference|auto] [--threads 1,2] [--isa simd,relaxed]
//                      [--workloads decode_32,decode_64,encode_256] [--kernels | --no-kernels]
//                      [--runs 3] [--slow-s 60] [--weights auto|random|DIR] [--allow-software] [--json out.json]
//                      [--only <kernel name substrings>] [--peak-json $PEERS_DIR/results/wasm_simd.json]
//
// Two parts, each measured in fresh child processes:
//  * kernel micro-benchmarks (wasm backend only; tinybench): each kernel of the `Kernels` contract at SD-1.x
//    shapes, GFLOP/s = 2 × multiply-adds / median time (GroupNorm: GB/s of one read + one write of x), for
//    every --threads × --isa, with the share of the machine's f32x4 peak measured by ../shared/peers. 3×3
//    stride-1 convolutions count direct-convolution FLOPs (an effective rate: Winograd does fewer). The relaxed-SIMD build needs `--experimental-wasm-relaxed-simd` on Node 20:
//    the child is started with that flag when this runtime does not validate relaxed SIMD by itself.
//  * end-to-end workloads through the public API: decode_N (latent 1×4×N×N → image 8N×8N), encode_N
//    (image 1×3×N×N → posterior). Each (workload, isa, threads) in its own child: load, one warm-up, then
//    the median of --runs timed runs (1 if the warm-up took longer than --slow-s seconds). Prints seconds,
//    GFLOP/s and peak RSS: `peak RSS` = VmHWM after a reset right after loading (inference incl. resident
//    weights, as ../shared/peers measures it), `process` = the whole child's peak (maxRSS, KiB → MB).
//
// Which parts run: --kernels → micro-benchmarks only; --no-kernels, or --workloads without --kernels →
// end-to-end only; neither → both. Defaults: --backend wasm, --threads 1,<cores>, --isa simd,relaxed (wasm),
// workloads decode_32,decode_64,encode_256 (webgpu: decode_64,decode_128 = 512² and 1024²).
// Weights: the peers' shared diffusers folder ($PEERS_DIR/onnx/diffusers, written by ../shared/peers/setup.sh)
// when present, else seeded random weights (see common.mjs); --weights random|DIR overrides.
// WebGPU: needs a hardware adapter; with --allow-software it also runs on a software adapter (SwiftShader,
// VK_ICD_FILENAMES pointed at Debian chromium's ICD when unset) and labels the figures as such.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  DIST,
  fmt,
  loadModel,
  machineInfo,
  maxRssMb,
  median,
  PEERS_DIR,
  parseArgs,
  parseWorkload,
  RELAXED_FLAG,
  randn,
  resetHwm,
  runChild,
  vmHwmMb,
  workloadGflop,
} from "./common.mjs";

const SELF = fileURLToPath(import.meta.url);
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

/**
 * f32x4 peaks of the machine in WASM (mul+add for the plain build, relaxed_madd for the relaxed build),
 * from ../shared/peers: its wasm_simd.json when --peak-json (default $PEERS_DIR/results/wasm_simd.json)
 * exists, the best over its chain counts; else the figures in its README (2-core AVX-512 machine, 12 chains).
 */
const README_PEAK = { simd: { 1: 27.4, 2: 51.6 }, relaxed: { 1: 46.8, 2: 91.9 }, source: "../shared/peers README" };

function loadPeak(file) {
  try {
    const w = JSON.parse(readFileSync(file, "utf8"));
    const best = (op, key) => Math.max(...w.peak.filter((p) => p.op === op && p[key]).map((p) => p[key]));
    const peak = {
      simd: { 1: best("muladd", "gflops_1t"), 2: best("muladd", "gflops_2t") },
      relaxed: { 1: best("madd", "gflops_1t"), 2: best("madd", "gflops_2t") },
      source: file,
    };
    return Object.values(peak.simd)
      .concat(Object.values(peak.relaxed))
      .every((v) => v > 0 && Number.isFinite(v))
      ? peak
      : README_PEAK;
  } catch {
    return README_PEAK;
  }
}

function dimsOf(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// ---- kernel micro-benchmarks (child) ----------------------------------------------------------------

/** The kernels at SD-1.x shapes: name, work (GFLOP or GB), unit, buffers to allocate, and the op call. */
function kernelCases() {
  const conv = (name, cin, cout, k, h, stride = 1) => {
    const pad = k === 3 ? (stride === 1 ? [1, 1, 1, 1] : [0, 1, 0, 1]) : [0, 0, 0, 0];
    const oh = Math.floor((h + pad[0] + pad[1] - k) / stride) + 1;
    return {
      name,
      unit: "GFLOP/s",
      work: (2 * cin * cout * k * k * oh * oh) / 1e9,
      // 3×3 stride-1 convolutions may run as Winograd F(2×2 or 4×4, 3×3) (2.25× or 4× fewer multiplications): their rate
      // counts direct-convolution FLOPs (an effective rate) and can exceed the f32x4 peak
      effective: k === 3 && stride === 1,
      bufs: { x: cin * h * h, weight: cout * cin * k * k, bias: cout, out: cout * oh * oh },
      op: (kn, b) =>
        kn.conv2d({
          x: b.x,
          weight: b.weight,
          bias: b.bias,
          out: b.out,
          batch: 1,
          inChannels: cin,
          inHeight: h,
          inWidth: h,
          outChannels: cout,
          kernelH: k,
          kernelW: k,
          stride,
          padTop: pad[0],
          padBottom: pad[1],
          padLeft: pad[2],
          padRight: pad[3],
          outHeight: oh,
          outWidth: oh,
        }),
    };
  };
  const gn = (name, c, h) => ({
    name,
    unit: "GB/s",
    work: (2 * c * h * h * 4) / 1e9,
    bufs: { x: c * h * h, gamma: c, beta: c, out: c * h * h },
    op: (kn, b) =>
      kn.groupNorm({
        x: b.x,
        gamma: b.gamma,
        beta: b.beta,
        out: b.out,
        batch: 1,
        channels: c,
        spatial: h * h,
        groups: 32,
        eps: 1e-6,
        activation: "silu",
      }),
  });
  const N = 4096,
    D = 512;
  return [
    conv("conv3x3 512→512 @64×64", 512, 512, 3, 64),
    conv("conv3x3 256→256 @128×128", 256, 256, 3, 128),
    conv("conv3x3 128→128 @256×256", 128, 128, 3, 256),
    conv("conv3x3 s2 128→128 256²→128² (downsample)", 128, 128, 3, 256, 2),
    conv("conv1x1 512→256 @128×128 (shortcut)", 512, 256, 1, 128),
    gn("groupnorm+silu 512ch @64×64 (32 groups)", 512, 64),
    gn("groupnorm+silu 128ch @256×256 (32 groups)", 128, 256),
    {
      name: `linear ${N}×${D}→${D} (q/k/v/out)`,
      unit: "GFLOP/s",
      work: (2 * N * D * D) / 1e9,
      bufs: { x: N * D, weight: D * D, bias: D, out: N * D },
      op: (kn, b) =>
        kn.linear({ x: b.x, weight: b.weight, bias: b.bias, out: b.out, rows: N, inFeatures: D, outFeatures: D }),
    },
    {
      name: `attention N=${N} D=${D} (q·kᵀ, softmax, p·v)`,
      unit: "GFLOP/s",
      work: (2 * 2 * N * N * D) / 1e9,
      bufs: { q: N * D, k: N * D, v: N * D, out: N * D },
      op: (kn, b) =>
        kn.attention({
          q: b.q,
          k: b.k,
          v: b.v,
          out: b.out,
          batch: 1,
          queries: N,
          keys: N,
          dim: D,
          scale: 1 / Math.sqrt(D),
        }),
    },
  ];
}

async function childKernels(spec) {
  const { createWasmBackend } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
  const { Bench } = await import("tinybench");
  const kn = await createWasmBackend({ threads: spec.threads, relaxed: spec.isa === "relaxed" });
  const rows = [];
  try {
    if (kn.threadFallback) throw new Error(`threads fell back to ${kn.threads}: ${kn.threadFallback}`);
    for (const c of kernelCases()) {
      if (spec.only && !spec.only.some((s) => c.name.includes(s))) continue;
      const b = {};
      let seed = 1;
      for (const [k, n] of Object.entries(c.bufs)) {
        b[k] = kn.alloc(n);
        kn.write(b[k], randn(n, seed++, k === "gamma" ? 0.1 : 1, k === "gamma" ? 1 : 0));
      }
      // one op per iteration; read(out, 1) waits until threaded ops are finished
      const once = async () => {
        await c.op(kn, b);
        await kn.read(b.out, 1);
      };
      // guard against timing an op that did nothing: out is zeroed before every iteration and compared
      // with the first result at the end
      const zeros = new Float32Array(b.out.length);
      await once();
      const first = await kn.read(b.out);
      // heavy kernels: 1 warm-up + `runs` iterations; light ones: at least 0.5 s of iterations
      const heavy = c.work > 1;
      const bench = new Bench({
        iterations: heavy ? spec.runs : 10,
        time: heavy ? 0 : 500,
        warmupIterations: heavy ? 1 : 3,
        warmupTime: 0,
        throws: true,
      });
      bench.add(c.name, once, { beforeEach: () => kn.write(b.out, zeros) });
      await bench.run();
      const last = await kn.read(b.out);
      let maxDiff = 0,
        maxAbs = 0;
      for (let i = 0; i < first.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(first[i] - last[i]));
        maxAbs = Math.max(maxAbs, Math.abs(first[i]));
      }
      const outputOk = maxAbs > 0 && maxDiff <= 1e-5 * maxAbs;
      const r = /** @type {any} */ (bench.tasks[0].result); // tinybench 6 types the result as a union
      const ms = r.latency.p50;
      const row = {
        kernel: c.name,
        isa: kn.instructionSet,
        threads: kn.threads,
        unit: c.unit,
        work: c.work,
        median_ms: ms,
        min_ms: r.latency.min,
        samples: r.latency.samples?.length ?? Math.round(r.totalTime / r.period),
        rate: c.work / (ms / 1e3),
        best_rate: c.work / (r.latency.min / 1e3),
        output_ok: outputOk,
      };
      const peak = c.unit === "GFLOP/s" ? spec.peak[spec.isa]?.[spec.threads] : undefined;
      if (peak) row.pct_of_peers_peak = (100 * row.rate) / peak;
      if (c.effective) row.effective_rate = true;
      rows.push(row);
      console.log(
        `${row.kernel.padEnd(44)} ${kn.description.padEnd(30)} ${fmt(ms, 1).padStart(9)} ms  ${fmt(row.rate, 1).padStart(7)} ${c.unit}` +
          (row.pct_of_peers_peak
            ? `  (${fmt(row.pct_of_peers_peak, 0)}% of the f32x4 peak ${fmt(peak, 1)}${c.effective ? "; effective rate, direct-conv FLOPs" : ""})`
            : "") +
          (outputOk
            ? ""
            : `  OUTPUT CHECK FAILED (max |last − first| ${maxDiff.toExponential(2)}, max |first| ${maxAbs.toExponential(2)}): timing invalid`),
      );
      for (const buf of Object.values(b)) kn.free(buf);
    }
  } finally {
    kn.dispose();
  }
  return { rows, description: kn.description, max_rss_mb: maxRssMb() };
}

// ---- end-to-end workloads (child) -------------------------------------------------------------------

async function childE2E(spec) {
  const api = await import(pathToFileURL(path.join(DIST, "index.js")).href);
  const w = parseWorkload(spec.workload);
  const info = {};
  let opts,
    ownKernels = null;
  if (spec.backend === "wasm") {
    // the instruction set is chosen here, not by the runtime: both builds are measured on the same Node
    const { createWasmBackend } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
    ownKernels = await createWasmBackend({ threads: spec.threads, relaxed: spec.isa === "relaxed" });
    if (ownKernels.threadFallback)
      throw new Error(`threads fell back to ${ownKernels.threads}: ${ownKernels.threadFallback}`);
    opts = { kernels: ownKernels };
  } else {
    if (spec.backend === "webgpu") {
      const gpuMod = await import(pathToFileURL(path.join(DIST, "backends/webgpu/index.js")).href);
      const gpu = await gpuMod.getWebGPU();
      const adapter = gpu && (await gpu.requestAdapter({ powerPreference: "high-performance" }));
      if (!adapter) {
        return {
          skipped:
            `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? "unset"}); no GPU figures on this machine` +
            (spec.allowSoftware
              ? ""
              : " (--allow-software runs on SwiftShader, CPU emulation, when Debian's chromium is installed)"),
        };
      }
      info.adapter = adapter.info
        ? `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.device} ${adapter.info.description}`.trim()
        : "unknown";
      info.software_adapter = gpuMod.isSoftwareAdapter(adapter);
      if (info.software_adapter && !spec.allowSoftware) {
        return {
          skipped: `only a software WebGPU adapter here (${info.adapter}); pass --allow-software to time it anyway (not GPU figures)`,
          ...info,
        };
      }
    }
    opts = { backend: spec.backend, threads: spec.threads };
  }
  const t0 = performance.now();
  const { vae, weights } = await loadModel(api, opts, { weights: spec.weights });
  const loadS = (performance.now() - t0) / 1e3;
  const loadPeak = Math.max(vmHwmMb() ?? 0, maxRssMb());
  globalThis.gc?.(); // the host copy of the weights is garbage now (children run with --expose-gc)
  const hwmReset = resetHwm();
  const x = new api.Tensor(randn(dimsOf(w.dims), 1), w.dims);
  const run = async () => {
    if (w.kind === "decode") return (await vae.decode(x)).sample;
    const { latentDist } = await vae.encode(x);
    return latentDist.mean;
  };
  let t = performance.now();
  const y = await run();
  const warmS = (performance.now() - t) / 1e3;
  let absmax = 0,
    finite = true;
  for (const v of y.data) {
    if (!Number.isFinite(v)) finite = false;
    else if (Math.abs(v) > absmax) absmax = Math.abs(v);
  }
  const n = warmS > spec.slowS ? 1 : spec.runs;
  const times = [];
  const cpu0 = process.cpuUsage(),
    wall0 = performance.now();
  for (let i = 0; i < n; i++) {
    t = performance.now();
    await run();
    times.push((performance.now() - t) / 1e3);
  }
  const cpu = process.cpuUsage(cpu0);
  // cores busy over the timed runs: process CPU time (all threads) / wall time
  const cpuCores = (cpu.user + cpu.system) / 1e3 / (performance.now() - wall0);
  const med = median(times);
  const gflop = workloadGflop(w);
  /** @type {Record<string, any>} */
  const res = {
    workload: w.name,
    backend: vae.backend,
    description: vae.backendDescription,
    threads: spec.threads,
    isa: spec.isa ?? null,
    in_dims: w.dims,
    out_dims: y.shape,
    weights,
    load_s: loadS,
    warmup_s: warmS,
    runs: times,
    median_s: med,
    slow: n < spec.runs,
    gflop,
    gflops: gflop / med,
    cpu_cores: cpuCores,
    peak_rss_mb: hwmReset ? vmHwmMb() : null,
    peak_rss_process_mb: Math.max(loadPeak, maxRssMb(), vmHwmMb() ?? 0),
    out_absmax: absmax,
    out_finite: finite,
    node: process.version,
    ...info,
  };
  if (ownKernels) res.wasm_memory_mb = ownKernels.memory.buffer.byteLength / 2 ** 20;
  vae.dispose();
  ownKernels?.dispose();
  return res;
}

// ---- parent -------------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2), ["kernels", "noKernels", "allowSoftware", "help"]);
  if (args.help) {
    console.log(readHeader());
    return;
  }
  if (!existsSync(path.join(DIST, "index.js")))
    throw new Error("dist/ is missing: run `npm run build` first (or `npm run bench`)");
  const { wasmRelaxedSimdSupported } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);
  const backend = args.backend ?? "wasm";
  if (!["wasm", "webgpu", "reference", "auto"].includes(backend)) throw new Error(`--backend: unknown ${backend}`);
  const cores = (await import("node:os")).availableParallelism();
  const threads = String(args.threads ?? (cores > 1 ? `1,${cores}` : "1"))
    .split(",")
    .map(Number);
  if (threads.some((t) => !Number.isInteger(t) || t < 1))
    throw new Error(`--threads: positive integers, got ${args.threads}`);
  const isas = String(args.isa ?? "simd,relaxed").split(",");
  if (isas.some((i) => i !== "simd" && i !== "relaxed")) throw new Error(`--isa: simd and/or relaxed, got ${args.isa}`);
  const runs = +(args.runs ?? 3),
    slowS = +(args.slowS ?? 60);
  const doKernels = args.kernels || (!args.noKernels && args.workloads === undefined);
  const doE2E = !args.kernels;
  const peak = loadPeak(args.peakJson ?? path.join(PEERS_DIR, "results", "wasm_simd.json"));
  const workloads = String(
    args.workloads ?? (backend === "webgpu" ? "decode_64,decode_128" : "decode_32,decode_64,encode_256"),
  ).split(",");
  workloads.forEach(parseWorkload); // validate before starting anything
  const relaxedNative = wasmRelaxedSimdSupported();
  // relaxed, and the backend's own choice (isa null: --backend auto|reference), get the flag as the CLI does
  const flagsFor = (isa) => ["--expose-gc", ...(isa !== "simd" && !relaxedNative ? [RELAXED_FLAG] : [])];
  const env = { ...process.env };
  if (backend === "webgpu" && args.allowSoftware && !env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD))
    env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

  const machine = machineInfo();
  console.log(
    `machine: ${machine.cpu}, ${machine.logicalCores} logical cores, ${machine.memGiB} GiB, node ${machine.node}, load average ${machine.loadavg.join(" ")}`,
  );
  if (machine.loadavg[0] > 0.5)
    console.log(`note: the load average is ${machine.loadavg[0]} — other processes are running, timings are noisy`);
  /** @type {{ machine: unknown, command: string, kernels: any[], workloads: any[], [k: string]: any }} */
  const out = { machine, command: process.argv.slice(1).join(" "), kernels: [], workloads: [] };

  if (doKernels) {
    if (backend !== "wasm")
      console.log(`(kernel micro-benchmarks measure the wasm backend; --backend ${backend} applies to the workloads)`);
    console.log(`\n== kernel micro-benchmarks (wasm; median of ${runs} after 1 warm-up for the heavy ones) ==`);
    console.log(
      `  f32x4 peaks from ${peak.source}: mul+add ${peak.simd[1].toFixed(1)} / ${peak.simd[2].toFixed(1)}, relaxed_madd ${peak.relaxed[1].toFixed(1)} / ${peak.relaxed[2].toFixed(1)} GFLOP/s (1 / 2 threads)`,
    );
    out.peak = peak;
    for (const isa of isas)
      for (const th of threads) {
        const spec = { isa, threads: th, runs, only: args.only ? String(args.only).split(",") : null, peak };
        try {
          const r = await runChild(SELF, ["--child-kernels", JSON.stringify(spec)], { flags: flagsFor(isa) });
          out.kernels.push(...r.rows);
        } catch (e) {
          console.log(`  FAILED kernels ${isa} t=${th}: ${e.message}`);
        }
      }
  }

  if (doE2E) {
    console.log(
      `\n== end-to-end, ${backend} (one child each: load, 1 warm-up, median of ${runs}; 1 run if the warm-up exceeds ${slowS} s) ==`,
    );
    if (backend === "webgpu" && args.allowSoftware)
      console.log(
        "  --allow-software: a software adapter (SwiftShader) is accepted; its figures are CPU emulation, not GPU figures",
      );
    const isaList = backend === "wasm" ? isas : [null];
    const threadList = backend === "webgpu" ? [threads[threads.length - 1]] : threads;
    for (const wl of workloads)
      for (const isa of isaList)
        for (const th of threadList) {
          const spec = {
            backend,
            workload: wl,
            isa,
            threads: th,
            runs,
            slowS,
            weights: args.weights ?? "auto",
            allowSoftware: !!args.allowSoftware,
          };
          const t0 = Date.now();
          try {
            const r = await runChild(SELF, ["--child-e2e", JSON.stringify(spec)], { flags: flagsFor(isa), env });
            if (r.skipped) {
              console.log(`  ${wl}: skipped — ${r.skipped}`);
              out.workloads.push({ workload: wl, backend, skipped: r.skipped });
              continue;
            }
            r.date = new Date().toISOString();
            out.workloads.push(r);
            console.log(
              `  ${wl.padEnd(10)} ${r.description.padEnd(28)} median ${fmt(r.median_s).padStart(7)} s  ${fmt(r.gflops, 1).padStart(6)} GFLOP/s` +
                `  (runs ${r.runs.map((v) => v.toFixed(2)).join(", ")}; warm-up ${fmt(r.warmup_s)} s${r.slow ? ", slow: 1 run" : ""}; CPU use ${fmt(r.cpu_cores)} cores)` +
                `  peak RSS ${fmt(r.peak_rss_mb, 0)} MB (process ${fmt(r.peak_rss_process_mb, 0)} MB${r.wasm_memory_mb ? `, wasm memory ${fmt(r.wasm_memory_mb, 0)} MB` : ""})` +
                `${r.software_adapter ? "  [SOFTWARE adapter: " + r.adapter + "]" : r.adapter ? "  [" + r.adapter + "]" : ""}` +
                `${r.out_finite ? "" : "  OUTPUT NOT FINITE"}  [${((Date.now() - t0) / 1e3).toFixed(0)} s]`,
            );
          } catch (e) {
            console.log(`  FAILED ${wl} ${isa ?? ""} t=${th}: ${e.message}`);
            out.workloads.push({ workload: wl, backend, isa, threads: th, error: e.message.slice(0, 2000) });
          }
        }
  }

  console.log("\n" + markdown(out));
  if (args.json) {
    writeFileSync(args.json, JSON.stringify(out, null, 1));
    console.log(`wrote ${args.json}`);
  }
}

/** Tables for bench/RESULTS.md. */
function markdown(out) {
  const lines = [];
  if (out.kernels.length) {
    lines.push(
      "| kernel | isa | threads | median ms | rate | unit | % of f32x4 peak |",
      "|---|---|---|---|---|---|---|",
    );
    for (const r of out.kernels) {
      const pct =
        r.pct_of_peers_peak && r.output_ok
          ? fmt(r.pct_of_peers_peak, 0) + "%" + (r.effective_rate ? " (effective)" : "")
          : "—";
      lines.push(
        `| ${r.kernel} | ${r.isa} | ${r.threads} | ${fmt(r.median_ms, 1)} | ${r.output_ok ? fmt(r.rate, 1) : "invalid (output check failed)"} | ${r.unit} | ${pct} |`,
      );
    }
    lines.push(
      "",
      "3×3 stride-1 rows: effective rate (2 × direct-convolution multiply-adds / time); the backend may use Winograd.",
      "",
    );
    lines.push("");
  }
  const done = out.workloads.filter((r) => r.median_s !== undefined);
  if (done.length) {
    lines.push(
      "| workload | backend | threads | median s | runs s | GFLOP/s | peak RSS MB (inference / process) |",
      "|---|---|---|---|---|---|---|",
    );
    for (const r of done) {
      lines.push(
        `| ${r.workload} | ${r.description}${r.software_adapter ? " (software adapter)" : ""} | ${r.threads} | ${fmt(r.median_s)} | ${r.runs.map((v) => v.toFixed(2)).join(", ")} | ${fmt(r.gflops, 1)} | ${fmt(r.peak_rss_mb, 0)} / ${fmt(r.peak_rss_process_mb, 0)} |`,
      );
    }
  }
  return lines.join("\n");
}

function readHeader() {
  const lines = readFileSync(SELF, "utf8").split("\n");
  return lines
    .slice(
      0,
      lines.findIndex((l) => !l.startsWith("//")),
    )
    .map((l) => l.slice(3))
    .join("\n");
}

const mode = process.argv[2];
if (mode === "--child-kernels" || mode === "--child-e2e") {
  const spec = JSON.parse(process.argv[3]);
  const r = mode === "--child-kernels" ? await childKernels(spec) : await childE2E(spec);
  console.log("RESULT " + JSON.stringify(r));
  process.exit(0);
} else {
  try {
    await main();
  } catch (e) {
    console.error(`bench: ${e.message}`);
    process.exit(1);
  }
}
