// Shared by the tests that run the library in other JavaScript runtimes: where each runtime's binary lies
// inside node_modules (the registry packages ship them; nothing is downloaded), a fresh build of the sources
// in the package's layout, bundles for script-only runtimes, and Node's own output to compare with.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import { it } from "vitest";
import { createWasmBackend } from "../../src/backends/wasm/index.js";
import * as lib from "../../src/index.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { AutoencoderKL } from "../../src/models/autoencoder-kl/autoencoder-kl.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { probe } from "../runtimes/probe.mjs";
import { enableRelaxedSimd } from "./relaxed-simd.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const DEMO = join(ROOT, "assets", "demo-vae");
export const PHOTO = join(ROOT, "assets", "chelsea.png");
export const IN_CI = !!process.env.CI;

/** A runtime's executable, or why there is none. */
export type Found = { path: string; reason?: undefined } | { path?: undefined; reason: string };

function firstBinary(what: string, candidates: string[], hint: string): Found {
  for (const rel of candidates) {
    const p = join(ROOT, "node_modules", rel);
    // npm may leave a package's placeholder script where its postinstall would have put the binary
    if (existsSync(p) && statSync(p).size > 1 << 20) return { path: p };
  }
  return { reason: `${what}: no binary in node_modules (looked for ${candidates.join(", ")}); ${hint}` };
}

const platform = `${process.platform}-${process.arch}`;

/** The pinned devDependencies' binaries (their platform packages; the npm wrappers need install scripts). */
export function findDeno(): Found {
  const pkg = {
    "linux-x64": "@deno/linux-x64-glibc",
    "linux-arm64": "@deno/linux-arm64-glibc",
    "darwin-arm64": "@deno/darwin-arm64",
    "darwin-x64": "@deno/darwin-x64",
  }[platform];
  return firstBinary("Deno", [...(pkg ? [`${pkg}/deno`] : []), "deno/deno"], "run `npm ci` (devDependency deno)");
}

export function findBun(): Found {
  const pkg = {
    "linux-x64": "@oven/bun-linux-x64",
    "linux-arm64": "@oven/bun-linux-aarch64",
    "darwin-arm64": "@oven/bun-darwin-aarch64",
    "darwin-x64": "@oven/bun-darwin-x64",
  }[platform];
  return firstBinary(
    "Bun",
    [...(pkg ? [`${pkg}/bin/bun`] : []), "bun/bin/bun.exe"],
    "run `npm ci` (devDependency bun)",
  );
}

/** Node of that major version: this process's, or tools/node's pinned binary (`npm ci --prefix tools/node`). */
export function findNode(major: number): Found {
  if (Number(process.versions.node.split(".")[0]) === major) return { path: process.execPath };
  const p = join(ROOT, "tools", "node", "node_modules", `node${major}`, "bin", "node");
  if (existsSync(p)) return { path: p };
  return {
    reason: `Node ${major}: not this process's Node (${process.version}) and ${p} is missing; run \`npm ci --prefix tools/node\` (linux-x64)`,
  };
}

/** A Node that miniflare accepts (>= 22) and miniflare itself. */
export function findMiniflareNode(): Found {
  if (!existsSync(join(ROOT, "node_modules", "miniflare", "package.json")))
    return { reason: "miniflare: not installed; run `npm ci`" };
  if (Number(process.versions.node.split(".")[0]) >= 22) return { path: process.execPath };
  const n = findNode(22);
  return n.path ? n : { reason: `miniflare needs Node >= 22: ${n.reason}` };
}

/**
 * `it`, or — where the runtime is missing outside CI — a skipped test whose reason is printed. In CI a
 * missing runtime fails the test with that reason.
 */
export function itWith(found: Found, name: string, fn: (path: string) => Promise<void>, timeout?: number): void {
  if (found.path === undefined && !IN_CI) {
    console.warn(`skipped "${name}": ${found.reason}`);
    it.skip(`${name} (skipped: ${found.reason})`, () => undefined);
    return;
  }
  it(
    name,
    async () => {
      if (found.path === undefined) throw new Error(`cannot run in CI: ${found.reason}`);
      await fn(found.path);
    },
    timeout,
  );
}

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

/**
 * Runs a command to its end (no shell), with a time limit. It leads its own process group, so a timeout
 * also ends what it started (workerd under miniflare).
 */
export function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd ?? ROOT,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: process.platform !== "win32",
    });
    const out: Buffer[] = [],
      err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      try {
        if (child.pid && process.platform !== "win32") process.kill(-child.pid, "SIGKILL");
        else child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, options.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString("utf8"),
        ms: performance.now() - t0,
      });
    });
  });
}

/** A scratch folder, removed by the caller's afterAll through cleanup(). */
export function scratch(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `autoencoderkl-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The package as it ships (dist/*.js next to build/*.wasm), compiled from the current sources file by file
 * (no tsc type-check: well under a second), so no test runs a stale dist/.
 */
export async function freshPackage(dir: string): Promise<{ index: string }> {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) files.push(p);
    }
  };
  walk(join(ROOT, "src"));
  await build({
    entryPoints: files,
    outdir: join(dir, "dist"),
    outbase: join(ROOT, "src"),
    format: "esm",
    platform: "neutral",
    target: "es2022",
    logLevel: "error",
  });
  mkdirSync(join(dir, "build"));
  for (const f of ["kernels-simd.wasm", "kernels-relaxed.wasm"])
    copyFileSync(join(ROOT, "build", f), join(dir, "build", f));
  return { index: join(dir, "dist", "index.js") };
}

/**
 * Resolves the package's own names as a user's bundler would: "autoencoderkl" to the sources and
 * "autoencoderkl/kernels-*.wasm" to sibling files the runtime loads as compiled modules.
 */
export const packageAliases: Plugin = {
  name: "autoencoderkl-aliases",
  setup(b) {
    b.onResolve({ filter: /^autoencoderkl$/ }, () => ({ path: join(ROOT, "src", "index.ts") }));
    b.onResolve({ filter: /^autoencoderkl\/kernels-(simd|relaxed)\.wasm$/ }, (a) => ({
      path: `./${a.path.slice("autoencoderkl/".length)}`,
      external: true,
    }));
  },
};

/** One bundled file (ESM for workerd, an IIFE script for edge-runtime), as text. */
export async function bundle(entry: string, format: "esm" | "iife", globalName?: string): Promise<string> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    format,
    globalName,
    write: false,
    platform: "browser",
    target: "es2022",
    external: ["*.wasm", "*.bin"],
    plugins: [packageAliases],
    logLevel: "error",
  });
  return r.outputFiles[0].text;
}

export type ProbeResult = { metadata: Record<string, string>; tensors: Map<string, Tensor> };

export function readProbe(bytes: Uint8Array): ProbeResult {
  const { metadata, tensors } = readSafetensors(bytes, "probe result");
  return { metadata, tensors };
}

const references = new Map<string, Promise<ProbeResult>>();

/**
 * What this Node gives for the probe on one instruction set, single-threaded: the numbers each runtime
 * must match. Relaxed SIMD is switched on for this process where Node 20 needs the flag.
 */
export function nodeReference(isa: string): Promise<ProbeResult> {
  if (isa !== "simd" && isa !== "relaxed-simd")
    throw new Error(`no Node reference for instruction set ${JSON.stringify(isa)}`);
  let p = references.get(isa);
  if (!p) {
    p = (async () => {
      if (isa === "relaxed-simd") {
        const r = enableRelaxedSimd();
        if (!r.ok) throw new Error(`cannot compute Node's relaxed-SIMD reference: ${r.reason}`);
      }
      const kernels = await createWasmBackend({ relaxed: isa === "relaxed-simd", threads: 1 });
      const vae = await AutoencoderKL.fromPretrained(DEMO, { kernels });
      try {
        return readProbe(await probe(lib, vae, new Uint8Array(readFileSync(PHOTO))));
      } finally {
        vae.dispose();
        kernels.dispose();
      }
    })();
    references.set(isa, p);
  }
  return p;
}

/** Largest |a - b| over every tensor of the probe; throws if names or shapes differ. */
export function maxProbeDiff(got: ProbeResult, want: ProbeResult): number {
  const names = [...want.tensors.keys()].sort();
  if ([...got.tensors.keys()].sort().join() !== names.join())
    throw new Error(`tensors ${[...got.tensors.keys()]} vs ${names}`);
  let max = 0;
  for (const k of names) {
    const a = got.tensors.get(k)!,
      b = want.tensors.get(k)!;
    if (a.shape.join() !== b.shape.join()) throw new Error(`${k}: shape [${a.shape}] vs [${b.shape}]`);
    for (let i = 0; i < a.data.length; i++) {
      const d = Math.abs(a.data[i] - b.data[i]);
      if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
    }
  }
  return max;
}
