// Winograd tiles side by side on one 3×3 stride-1 convolution: direct, F(2×2, 3×3) and F(4×4, 3×3) on the
// wasm backend (runs against dist/: `npm run build` first).
//
//   node bench/winograd.mjs [--error] [--speed] [--pack [--base DIR]] [--layers 512x64,128x256]
//                           [--isa simd,relaxed] [--runs 3]
//
// --error: x ~ N(0, 1), weights ~ N(0, 1/(9C)) (a trained conv's scale: outputs of unit variance), zero bias;
//   each variant against a float64 direct convolution over the first 16 output channels (every pixel):
//   max |error| and its RMS, next to the output's RMS.
// --speed: median of --runs calls (after one warm-up) per variant, threads 1, each variant twice in turn;
//   ratios are within one run. Times are the process's CPU time (one thread: the call's), which a busy
//   machine disturbs less than wall time; still indicative only (caches are shared).
// --pack: the weight transforms alone (winogradPack, winograd4Pack: U = G g Gᵀ, on every call), C → C
//   channels, median CPU time of --runs, threads 1, two rounds; --base DIR: also the kernels-*.wasm in DIR
//   (another build, e.g. main's: before and after in one run, taking turns).
// --upsample: Upsample2D's conv instead (nearest ×2 then the 3×3 conv; a layer's H is the input's, the output
//   2H×2H), F(4×4) three ways: on a formed upsampled tensor (upsampleNearest2x, then the conv: as before the
//   fusion), as 4 phase kernels on the input (one pass), and staged (input rows read upsampled); --error and
//   --speed as above (the speed of the first includes its upsampling).
// None of these flags: --error and --speed. A layer is CxH: C → C channels at H×H.

import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import v8 from "node:v8";
import { DIST, randn } from "./common.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const doPack = args.includes("--pack");
const doError = args.includes("--error") || (!args.includes("--speed") && !doPack);
const doSpeed = args.includes("--speed") || (!args.includes("--error") && !doPack);
const layers = opt("--layers", doSpeed && !doError ? "512x64,512x128,256x256,128x512" : "512x64,128x256")
  .split(",")
  .map((s) => s.split("x").map(Number));
const isas = opt("--isa", "simd,relaxed").split(",");
const runs = Number(opt("--runs", "3"));
const CHECKED = 16;

try {
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd"); // Node 20; later versions have it on
} catch {}
const { createWasmBackend } = await import(pathToFileURL(path.join(DIST, "backends/wasm/index.js")).href);

const upsample = args.includes("--upsample");
/** @type {[string, { winogradMinChannels: number, winogradTile?: 2 | 4, upsamplePhases?: 4 | "staged", formed?: boolean }][]} */
const VARIANTS = upsample
  ? [
      ["formed", { winogradMinChannels: 1, winogradTile: 4, formed: true }],
      ["phases", { winogradMinChannels: 1, winogradTile: 4, upsamplePhases: 4 }],
      ["staged", { winogradMinChannels: 1, winogradTile: 4, upsamplePhases: "staged" }],
    ]
  : [
      ["direct", { winogradMinChannels: Infinity }],
      ["F(2x2)", { winogradMinChannels: 1, winogradTile: 2 }],
      ["F(4x4)", { winogradMinChannels: 1, winogradTile: 4 }],
    ];
/** The ratios printed after a layer's speeds: [numerator, denominator] variant names. */
const RATIOS = upsample
  ? [
      ["phases", "formed"],
      ["staged", "formed"],
    ]
  : [
      ["F(4x4)", "F(2x2)"],
      ["F(4x4)", "direct"],
    ];

/** x [C][H][H] upsampled ×2 by nearest neighbour. */
function upsampled(x, C, H) {
  const y = new Float32Array(4 * C * H * H);
  for (let c = 0; c < C; c++)
    for (let yy = 0; yy < 2 * H; yy++)
      for (let xx = 0; xx < 2 * H; xx++) y[(c * 2 * H + yy) * 2 * H + xx] = x[(c * H + (yy >> 1)) * H + (xx >> 1)];
  return y;
}

/** out[o][y][x] for o < CHECKED, in float64, zero padding 1. */
function reference(x, w, C, H) {
  const out = new Float64Array(CHECKED * H * H);
  for (let o = 0; o < CHECKED; o++) {
    for (let c = 0; c < C; c++) {
      for (let ky = 0; ky < 3; ky++) {
        for (let kx = 0; kx < 3; kx++) {
          const g = w[((o * C + c) * 3 + ky) * 3 + kx];
          for (let y = 0; y < H; y++) {
            const iy = y + ky - 1;
            if (iy < 0 || iy >= H) continue;
            const src = (c * H + iy) * H;
            const x0 = Math.max(0, 1 - kx),
              x1 = Math.min(H, H + 1 - kx);
            const dst = (o * H + y) * H;
            for (let xx = x0; xx < x1; xx++) out[dst + xx] += g * x[src + xx + kx - 1];
          }
        }
      }
    }
  }
  return out;
}

/** The layer's conv; with --upsample on x upsampled (formed into bufs.up first, or fused). */
async function conv(kn, bufs, C, H, formed) {
  if (formed) await kn.upsampleNearest2x({ x: bufs.x, out: bufs.up, planes: C, height: H, width: H });
  const S = upsample && !formed ? H : (upsample ? 2 : 1) * H;
  const OH = (upsample ? 2 : 1) * H;
  await kn.conv2d({
    x: formed ? bufs.up : bufs.x,
    weight: bufs.w,
    bias: bufs.b,
    out: bufs.out,
    batch: 1,
    inChannels: C,
    inHeight: S,
    inWidth: S,
    outChannels: C,
    kernelH: 3,
    kernelW: 3,
    stride: 1,
    padTop: 1,
    padBottom: 1,
    padLeft: 1,
    padRight: 1,
    outHeight: OH,
    outWidth: OH,
    ...(upsample && !formed ? { upsample: true } : {}),
  });
}

async function withBackend(isa, o, C, H, x, w, fn) {
  const { formed, ...options } = o;
  const kn = await createWasmBackend({ relaxed: isa === "relaxed", threads: 1, ...options });
  const U = upsample ? 4 : 1;
  const bufs = { x: kn.alloc(C * H * H), w: kn.alloc(C * C * 9), b: kn.alloc(C), out: kn.alloc(U * C * H * H) };
  if (formed) bufs.up = kn.alloc(4 * C * H * H);
  kn.write(bufs.x, x);
  kn.write(bufs.w, w);
  kn.write(bufs.b, new Float32Array(C));
  try {
    return await fn(kn, bufs);
  } finally {
    kn.dispose();
  }
}

for (const [C, H] of layers) {
  const x = randn(C * H * H, 1);
  const w = randn(C * C * 9, 2, 1 / Math.sqrt(9 * C));
  const OH = (upsample ? 2 : 1) * H;
  if (doError) {
    const want = reference(upsample ? upsampled(x, C, H) : x, w, C, OH);
    let ss = 0;
    for (const v of want) ss += v * v;
    const lines = [];
    for (const isa of isas) {
      for (const [name, o] of VARIANTS) {
        const got = await withBackend(isa, o, C, H, x, w, async (kn, bufs) => {
          await conv(kn, bufs, C, H, o.formed);
          return kn.read(bufs.out);
        });
        let max = 0,
          se = 0;
        for (let i = 0; i < want.length; i++) {
          const d = Math.abs(got[i] - want[i]);
          max = Math.max(max, d);
          se += d * d;
        }
        lines.push(
          `  ${isa.padEnd(7)} ${name.padEnd(7)} max ${max.toExponential(2)}  rms ${Math.sqrt(se / want.length).toExponential(2)}`,
        );
      }
    }
    console.log(
      `error ${C}→${C} @${OH}×${OH}${upsample ? " (upsampled)" : ""} (output rms ${Math.sqrt(ss / want.length).toFixed(3)}):\n${lines.join("\n")}`,
    );
  }
  if (doSpeed) {
    for (const isa of isas) {
      /** @type {Record<string, number[]>} */
      const ms = {};
      for (let round = 0; round < 2; round++) {
        for (const [name, o] of VARIANTS) {
          const t = await withBackend(isa, o, C, H, x, w, async (kn, bufs) => {
            await conv(kn, bufs, C, H, o.formed);
            const ts = [];
            for (let i = 0; i < runs; i++) {
              const t0 = process.cpuUsage();
              await conv(kn, bufs, C, H, o.formed);
              const dt = process.cpuUsage(t0);
              ts.push((dt.user + dt.system) / 1e3);
            }
            return ts.sort((a, b) => a - b)[ts.length >> 1];
          });
          (ms[name] ??= []).push(t);
        }
      }
      const best = (n) => Math.min(...ms[n]);
      const gflop = (2 * C * C * 9 * OH * OH) / 1e9;
      console.log(
        `speed ${isa} ${C}→${C} @${OH}×${OH}${upsample ? " (upsampled)" : ""}: ` +
          VARIANTS.map(
            ([n]) =>
              `${n} ${ms[n].map((t) => t.toFixed(0)).join("/")} ms (${(gflop / (best(n) / 1e3)).toFixed(1)} eff. GFLOP/s)`,
          ).join(", ") +
          "; " +
          RATIOS.map(([a, b]) => `${a}/${b} ${(best(a) / best(b)).toFixed(2)}`).join(", "),
      );
    }
  }
}

if (doPack) {
  /** @type {[string, string | undefined][]} */
  const builds = [["this", undefined]];
  if (opt("--base")) builds.push(["base", opt("--base")]);
  const PACKS = [
    ["F(2x2)", "winogradPack", "winogradScratchBytes"],
    ["F(4x4)", "winograd4Pack", "winograd4ScratchBytes"],
  ];
  for (const [C, H] of layers) {
    const w = randn(C * C * 9, 2, 1 / Math.sqrt(9 * C));
    for (const isa of isas) {
      const made = [];
      for (const [name, dir] of builds) {
        const wasmBytes = dir ? readFileSync(path.join(dir, `kernels-${isa}.wasm`)) : undefined;
        const kn = await createWasmBackend({ relaxed: isa === "relaxed", threads: 1, wasmBytes });
        const wb = kn.alloc(w.length);
        kn.write(wb, w);
        const scratch = PACKS.map(([, , bytes]) => kn.alloc(Math.ceil(kn.ex[bytes](C, H, H, C, 1) / 4)));
        made.push({ name, kn, wb, scratch });
      }
      /** @type {Record<string, number>} */
      const ms = {};
      for (let round = 0; round < 2; round++) {
        for (const [i, [label, fn]] of PACKS.entries()) {
          for (const { name, kn, wb, scratch } of made) {
            // winograd4Pack takes the phases of an upsampling pass (np, p0) since the fusion; a --base build
            // from before it does not
            const phases = fn === "winograd4Pack" && kn.ex[fn].length === 10 ? [0, 0] : [];
            const call = () => kn.ex[fn](wb.ptr, false, C, C, H, ...phases, scratch[i].ptr, 0, 1);
            call();
            const ts = [];
            for (let r = 0; r < runs; r++) {
              const t0 = process.cpuUsage();
              call();
              const dt = process.cpuUsage(t0);
              ts.push((dt.user + dt.system) / 1e3);
            }
            const t = ts.sort((a, b) => a - b)[ts.length >> 1];
            ms[`${label} ${name}`] = Math.min(ms[`${label} ${name}`] ?? Infinity, t);
          }
        }
      }
      for (const { kn } of made) kn.dispose();
      console.log(
        `pack ${isa} ${C}→${C}: ` +
          PACKS.map(([label]) => {
            const parts = made.map(({ name }) => `${name} ${ms[`${label} ${name}`].toFixed(2)} ms`);
            const ratio = made.length > 1 ? ` (${(ms[`${label} base`] / ms[`${label} this`]).toFixed(2)}× faster)` : "";
            return `${label} ${parts.join(", ")}${ratio}`;
          }).join("; "),
      );
    }
  }
}
