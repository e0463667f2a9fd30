#!/usr/bin/env node
// The `autoencoderkl` command. Runs the compiled CLI from dist/ (built by `npm run build`, which `npm ci`
// runs through the `prepare` script). In a checkout without dist/ — or with AUTOENCODERKL_FROM_SOURCE=1,
// as the tests do so they always exercise the current sources — it runs src/ through a tiny TypeScript
// loader (esbuild, a devDependency).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dist = new URL("../dist/cli/main.js", import.meta.url);
const src = new URL("../src/cli/main.ts", import.meta.url);
const fromSource = process.env.AUTOENCODERKL_FROM_SOURCE === "1" || !existsSync(fileURLToPath(dist));

let cli;
if (!fromSource) {
  cli = await import(dist.href);
} else if (existsSync(fileURLToPath(src))) {
  try {
    const { register } = await import("node:module");
    register("./ts-loader.mjs", import.meta.url);
  } catch (e) {
    process.stderr.write(
      `autoencoderkl: cannot run from the TypeScript sources (${e.message}); run \`npm run build\` first\n`,
    );
    process.exit(1);
  }
  cli = await import(src.href);
} else {
  process.stderr.write("autoencoderkl: dist/cli/main.js is missing: run `npm run build`\n");
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));
