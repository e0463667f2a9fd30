// Compiles assembly/ twice (asconfig.json targets): build/kernels-simd.wasm and build/kernels-relaxed.wasm.
// Skips the compile when both outputs are newer than every source (pretest runs this on each `npm test`);
// `--force` rebuilds anyway, `--wat` also writes the text form next to each binary. The simd compile also
// writes asc's declarations (build/kernels-simd.d.ts), from which src/backends/wasm/exports.generated.ts is
// regenerated (see kernel-bindings.mjs).
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";
import { generateBindings } from "./kernel-bindings.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const targets = { simd: "build/kernels-simd.wasm", relaxed: "build/kernels-relaxed.wasm" };
const force = process.argv.includes("--force");
const wat = process.argv.includes("--wat");

async function newestSource() {
  let newest = (await stat(join(root, "asconfig.json"))).mtimeMs;
  const walk = async (dir) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else newest = Math.max(newest, (await stat(p)).mtimeMs);
    }
  };
  await walk(join(root, "assembly"));
  newest = Math.max(newest, (await stat(fileURLToPath(import.meta.url))).mtimeMs);
  return newest;
}

async function mtime(p) {
  try {
    return (await stat(join(root, p))).mtimeMs;
  } catch {
    return -1;
  }
}

const newest = await newestSource();
let failed = false;
await Promise.all(
  Object.entries(targets).map(async ([target, out]) => {
    if (!force && (await mtime(out)) > newest) {
      console.log(`asbuild: ${out} is up to date`);
      return;
    }
    const args = ["--config", "asconfig.json", "--target", target, "--baseDir", root];
    if (wat) args.push("--textFile", out.replace(/\.wasm$/, ".wat"));
    if (target === "simd") args.push("--bindings", "raw");
    const t0 = performance.now();
    const { error, stderr } = await asc.main(args);
    if (error) {
      failed = true;
      console.error(`asbuild: ${target} failed: ${error.message}\n${stderr.toString()}`);
    } else {
      console.log(`asbuild: ${out} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }),
);
if (failed) process.exit(1);

// the typed JS side of the boundary, from the declarations of the build just made (or already there)
try {
  const dts = await readFile(join(root, "build/kernels-simd.d.ts"), "utf8");
  const text = generateBindings(dts, await readFile(join(root, "assembly/common.ts"), "utf8"));
  const dest = join(root, "src/backends/wasm/exports.generated.ts");
  const old = await readFile(dest, "utf8").catch(() => "");
  if (old !== text) {
    await writeFile(dest, text);
    console.log("asbuild: src/backends/wasm/exports.generated.ts updated");
  }
} catch (e) {
  if (e.code !== "ENOENT") throw e;
  console.log("asbuild: no build/kernels-simd.d.ts (run with --force to write it); bindings left as they are");
}
