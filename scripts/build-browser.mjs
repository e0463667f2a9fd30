// Browser build: one ESM bundle of src/browser.ts at dist/browser/autoencoderkl.js (types: dist/browser.d.ts,
// from tsc). `prepare` runs it, so the package's "./browser" export exists after `npm ci` and `npm pack`.
//
// The wasm backend finds its kernels at new URL("../../../build/kernels-*.wasm", import.meta.url), a
// path that holds from src/backends/wasm/ and dist/backends/wasm/. Inside a bundle import.meta.url is
// the bundle's own URL, so the build rewrites that one path to "../../build/kernels-*.wasm": the same
// build/*.wasm files the package ships once (and exports as autoencoderkl/kernels-*.wasm), reached from
// dist/browser/. Serve the package (or repository) root, or let a bundler copy the new URL(...) assets;
// pages can still pass wasmModule/wasmBytes/wasmUrl. The build fails loudly if the source path changes.

import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "dist", "browser");
const KERNEL_PATH = /(["'])\.\.\/\.\.\/\.\.\/build\/(kernels-[a-z]+\.wasm)\1/g;

const kernelsNextToBundle = {
  name: "kernels-next-to-bundle",
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]backends[\\/]wasm[\\/]loader\.ts$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      const rewritten = source.replace(KERNEL_PATH, "$1../../build/$2$1");
      if (rewritten === source) {
        throw new Error(`${args.path}: no "../../../build/kernels-*.wasm" URL found; update scripts/build-browser.mjs`);
      }
      return { contents: rewritten, loader: "ts" };
    });
  },
};

const wasm = ["kernels-simd.wasm", "kernels-relaxed.wasm"];
for (const f of wasm) {
  if (!existsSync(join(root, "build", f))) {
    console.error(`build-browser: build/${f} is missing; run \`npm run asbuild\` first`);
    process.exit(1);
  }
}

const result = await build({
  entryPoints: [join(root, "src", "browser.ts")],
  outfile: join(outdir, "autoencoderkl.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
  metafile: true,
  plugins: [kernelsNextToBundle],
});

// The core import path must not pull in Node built-ins: any "node:" module in the graph is a bug.
const nodeImports = Object.values(result.metafile.inputs)
  .flatMap((i) => i.imports)
  .filter((i) => i.path.startsWith("node:") || i.external);
if (nodeImports.length) {
  console.error(
    `build-browser: the bundle imports Node built-ins or externals: ${nodeImports.map((i) => i.path).join(", ")}`,
  );
  process.exit(1);
}

// earlier builds copied the kernels in here: remove them so the package holds each .wasm once
for (const f of wasm) rmSync(join(outdir, f), { force: true });
const bytes = result.metafile.outputs[Object.keys(result.metafile.outputs).find((k) => k.endsWith(".js"))].bytes;
console.log(`build-browser: dist/browser/autoencoderkl.js (${(bytes / 1024).toFixed(0)} KiB), kernels from build/`);
