// The npm tarball as `npm pack` would make it now (after `npm ci`, whose `prepare` builds dist/, the browser
// bundle and the kernels): every export and bin points at a shipped file, the kernels are exported and
// shipped once, and no source map or relative import points at a file the tarball lacks.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface PackEntry {
  path: string;
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

function packedFiles(): Set<string> {
  // --ignore-scripts: pack what the last build left; building is `prepare`'s job, tested by CI's clean `npm ci`
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const out = execFileSync(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const [report] = JSON.parse(out) as Array<{ files: PackEntry[] }>;
  return new Set(report.files.map((f) => f.path));
}

/** Every file an exports map can resolve to (all conditions). */
function exportTargets(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(exportTargets);
  return [];
}

const files = packedFiles();
/** A plain target must be shipped; a subpath pattern ("./assets/*") must match at least one shipped file. */
const shipped = (p: string) => {
  const path = posix.normalize(p.replace(/^\.\//, ""));
  if (!path.includes("*")) return files.has(path);
  const [prefix, suffix] = path.split("*");
  return [...files].some((f) => f.startsWith(prefix) && f.endsWith(suffix) && f.length > prefix.length + suffix.length);
};

describe("npm package", () => {
  it("every export, main, types and bin target is in the tarball", () => {
    const targets = [
      ...Object.entries(pkg.exports as Record<string, unknown>).flatMap(([k, v]) =>
        exportTargets(v).map((t) => [k, t]),
      ),
      ["main", pkg.main],
      ["types", pkg.types],
      ...Object.entries(pkg.bin as Record<string, string>).map(([k, v]) => [`bin ${k}`, v]),
    ];
    const dangling = targets.filter(([, t]) => !shipped(t)).map(([k, t]) => `${k} → ${t}`);
    expect(dangling).toEqual([]);
  });

  it("exports the kernels and a typed ./browser bundle", () => {
    expect(pkg.exports["./kernels-simd.wasm"]).toBe("./build/kernels-simd.wasm");
    expect(pkg.exports["./kernels-relaxed.wasm"]).toBe("./build/kernels-relaxed.wasm");
    expect(pkg.exports["./browser"]).toMatchObject({
      types: expect.stringMatching(/\.d\.ts$/),
      default: "./dist/browser/autoencoderkl.js",
    });
    // the bundle's types describe what it exports: both come from src/browser.ts
    expect(pkg.exports["./browser"].types).toBe("./dist/browser.d.ts");
  });

  it("ships each .wasm once", () => {
    const wasm = [...files].filter((f) => f.endsWith(".wasm"));
    expect(wasm.sort()).toEqual(["build/kernels-relaxed.wasm", "build/kernels-simd.wasm"]);
  });

  it("source maps and their sources, and relative imports of the shipped JavaScript, resolve inside the tarball", () => {
    const problems: string[] = [];
    for (const f of files) {
      if (f.endsWith(".js")) {
        const text = readFileSync(join(ROOT, f), "utf8");
        const map = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text)?.[1];
        if (map && !map.startsWith("data:") && !files.has(posix.join(posix.dirname(f), map)))
          problems.push(`${f}: source map ${map} not shipped`);
        for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
          if (!files.has(posix.join(posix.dirname(f), m[1]))) problems.push(`${f}: imports ${m[1]}, not shipped`);
        }
      } else if (f.endsWith(".map")) {
        const map = JSON.parse(readFileSync(join(ROOT, f), "utf8")) as { sources: string[]; sourceRoot?: string };
        for (const s of map.sources) {
          const p = posix.join(posix.dirname(f), map.sourceRoot ?? "", s);
          if (!files.has(p)) problems.push(`${f}: source ${s} (${p}) not shipped`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
