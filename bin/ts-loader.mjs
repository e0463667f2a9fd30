// Module hooks that let Node run this package's TypeScript sources directly (development only):
// "./x.js" imported from a .ts file resolves to "./x.ts" when that exists, and .ts files are
// transpiled (types stripped) by esbuild. No type checking: `npm run typecheck` does that.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

let esbuild = null;

export async function resolve(specifier, context, next) {
  if (context.parentURL?.endsWith(".ts") && specifier.startsWith(".") && specifier.endsWith(".js")) {
    const ts = new URL(specifier.slice(0, -3) + ".ts", context.parentURL);
    if (existsSync(fileURLToPath(ts))) return { url: ts.href, format: "module", shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.startsWith("file:") && url.endsWith(".ts")) {
    esbuild ??= await import("esbuild");
    const file = fileURLToPath(url);
    const { code } = esbuild.transformSync(readFileSync(file, "utf8"), {
      loader: "ts",
      format: "esm",
      target: "node20",
      sourcefile: file,
      sourcemap: "inline",
    });
    return { format: "module", source: code, shortCircuit: true };
  }
  return next(url, context);
}
