/**
 * Where the WASM kernels come from, and the memory they run on.
 *
 * Three sources, in this order of precedence:
 * - `wasmModule`: a precompiled WebAssembly.Module (or one per instruction set). Cloudflare Workers and
 *   Vercel Edge forbid compiling WebAssembly from bytes at run time; there the platform compiles the
 *   `.wasm` at deploy time and the script imports it as a module. Nothing is compiled here then.
 * - `wasmBytes`: the `.wasm` file's bytes.
 * - `wasmUrl`, else build/kernels-{simd,relaxed}.wasm next to this package (found from import.meta.url).
 *
 * The kernels import one memory, `env.memory`, declared shared so worker threads can share it. Shared
 * memories need SharedArrayBuffer (cross-origin isolation in browsers); without them bytes are patched to
 * import an unshared memory (see binary.ts), and a precompiled module is linked to whichever memory it
 * accepts.
 */
import { AutoencoderKLError } from "../../errors.js";
import { isNode } from "../../platform.js";
import { importsSharedMemory, wasmRelaxedSimdSupported, wasmSimdSupported, withSharedMemoryImport } from "./binary.js";

/** One precompiled module, or one per instruction set (relaxed is used where the engine validates it). */
export type WasmModuleOption = WebAssembly.Module | { simd?: WebAssembly.Module; relaxed?: WebAssembly.Module };

/** Where the kernels come from; the same fields on fromPretrained / fromSingleFile / fromConfig options. */
export interface KernelSourceOptions {
  /**
   * Precompiled kernels: `import simd from "autoencoderkl/kernels-simd.wasm"` in a Worker or Edge
   * function gives a WebAssembly.Module. With it nothing is compiled from bytes.
   */
  wasmModule?: WasmModuleOption;
  /** The kernels' .wasm bytes (kernels-simd.wasm or kernels-relaxed.wasm). */
  wasmBytes?: ArrayBuffer | Uint8Array;
  /** Where to load the .wasm from, instead of the build/ folder next to this package. */
  wasmUrl?: string | URL;
}

export interface LoadOptions extends KernelSourceOptions {
  /** true: the relaxed-SIMD build; false: plain SIMD; "auto": relaxed where the engine validates it. */
  relaxed: boolean | "auto";
  /** false: never a shared memory. */
  sharedMemory?: boolean;
  /** Initial memory, in 64 KiB pages. */
  initialPages: number;
}

export interface LoadedKernels {
  module: WebAssembly.Module;
  instance: WebAssembly.Instance;
  memory: WebAssembly.Memory;
  /** The memory's maximum, in pages. */
  maxPages: number;
  shared: boolean;
}

const MAX_PAGES = 65536; // wasm32: 4 GiB

const ALTERNATIVES =
  'pass wasmModule (a precompiled WebAssembly.Module, e.g. `import simd from "autoencoderkl/kernels-simd.wasm"`), ' +
  "wasmBytes or wasmUrl";

/** True for a WebAssembly.Module from any realm (edge-runtime hands modules across vm contexts). */
export function isWasmModule(x: unknown): x is WebAssembly.Module {
  return Object.prototype.toString.call(x) === "[object WebAssembly.Module]";
}

/** The URL this file was loaded from, or null where the runtime gives none (bundled into a script, workerd). */
function moduleBase(): URL | null {
  try {
    const url = import.meta.url;
    return typeof url === "string" ? new URL(url) : null;
  } catch {
    return null;
  }
}

function defaultUrl(relaxed: boolean): URL {
  const base = moduleBase();
  if (!base) {
    throw new AutoencoderKLError(
      "wasm backend",
      `cannot locate the kernels: this runtime gives the library no URL of its own (import.meta.url); ${ALTERNATIVES}`,
    );
  }
  // the same depth from src/backends/wasm/ and dist/backends/wasm/ (scripts/build-browser.mjs rewrites it)
  return relaxed
    ? new URL("../../../build/kernels-relaxed.wasm", base)
    : new URL("../../../build/kernels-simd.wasm", base);
}

function resolveUrl(wasmUrl: string | URL): URL {
  try {
    return new URL(wasmUrl, moduleBase() ?? undefined);
  } catch (e) {
    throw new AutoencoderKLError(
      "options.wasmUrl",
      `is not a URL (nor relative to one): ${JSON.stringify(String(wasmUrl))}`,
      { cause: e },
    );
  }
}

async function loadBytes(relaxed: boolean, options: KernelSourceOptions): Promise<Uint8Array> {
  if (options.wasmBytes !== undefined) {
    // by tag, not instanceof: bytes may come from another realm (a vm context, an iframe)
    const bytes: unknown = options.wasmBytes;
    const tag = Object.prototype.toString.call(bytes);
    if (tag === "[object Uint8Array]") return bytes as Uint8Array;
    if (tag === "[object ArrayBuffer]") return new Uint8Array(bytes as ArrayBuffer);
    throw new AutoencoderKLError("options.wasmBytes", `must be an ArrayBuffer or a Uint8Array, got ${tag}`);
  }
  const url = options.wasmUrl !== undefined ? resolveUrl(options.wasmUrl) : defaultUrl(relaxed);
  try {
    if (isNode() && url.protocol === "file:") {
      const spec = "node:fs/promises"; // held in a variable so browser bundlers leave it alone
      const fs = (await import(spec)) as typeof import("node:fs/promises");
      return new Uint8Array(await fs.readFile(url));
    }
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new AutoencoderKLError(
      String(url),
      `cannot load the WASM kernels (${e instanceof Error ? e.message : String(e)}); run \`npm run asbuild\` or ${ALTERNATIVES}`,
      { cause: e },
    );
  }
}

/** A WebAssembly.Memory of `initial` pages with the largest maximum the engine grants (≤ 4 GiB). */
function makeMemory(initial: number, shared: boolean): { memory: WebAssembly.Memory; maxPages: number } | null {
  for (const maximum of [MAX_PAGES, 32768, 16384, 8192]) {
    if (maximum < initial) break;
    try {
      return { memory: new WebAssembly.Memory({ initial, maximum, shared }), maxPages: maximum };
    } catch {
      // a shared memory reserves its maximum up front; try a smaller one
    }
  }
  return null;
}

function canShareMemory(): boolean {
  return typeof SharedArrayBuffer === "function" && (typeof crossOriginIsolated === "undefined" || crossOriginIsolated);
}

function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<WebAssembly.Instance> {
  return WebAssembly.instantiate(module, {
    env: {
      memory,
      abort: () => {
        throw new Error("wasm kernel abort");
      },
    },
  });
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Which module of `wasmModule` to run, by the `relaxed` option and what the engine validates. */
function pickModule(option: WasmModuleOption, relaxed: boolean | "auto"): WebAssembly.Module {
  if (isWasmModule(option)) return option;
  if (
    typeof option !== "object" ||
    option === null ||
    ArrayBuffer.isView(option) ||
    Object.prototype.toString.call(option) === "[object ArrayBuffer]"
  ) {
    throw new AutoencoderKLError(
      "options.wasmModule",
      `must be a WebAssembly.Module or { simd?, relaxed? } of them, got ${Object.prototype.toString.call(option)} (bytes go in wasmBytes)`,
    );
  }
  const { simd, relaxed: relaxedModule } = option;
  for (const [k, v] of Object.entries({ simd, relaxed: relaxedModule })) {
    if (v !== undefined && !isWasmModule(v))
      throw new AutoencoderKLError(`options.wasmModule.${k}`, "must be a WebAssembly.Module");
  }
  if (!simd && !relaxedModule) throw new AutoencoderKLError("options.wasmModule", "holds neither simd nor relaxed");
  if (relaxed === true) {
    if (!relaxedModule)
      throw new AutoencoderKLError(
        "options.wasmModule",
        "relaxed SIMD was asked for but wasmModule.relaxed is missing",
      );
    return relaxedModule;
  }
  if (relaxed === false) {
    if (!simd)
      throw new AutoencoderKLError(
        "options.wasmModule",
        "plain SIMD was asked for (relaxed: false) but wasmModule.simd is missing",
      );
    return simd;
  }
  // a relaxed module that exists was compiled by this engine, so it runs here; prefer it where it is validated
  return relaxedModule && (!simd || wasmRelaxedSimdSupported()) ? relaxedModule : simd!;
}

/**
 * Finds, compiles (unless given compiled) and instantiates the kernels on a new memory: shared where the
 * runtime allows it (and options.sharedMemory is not false), else unshared.
 */
export async function loadKernels(options: LoadOptions): Promise<LoadedKernels> {
  const { initialPages } = options;
  const wantShared = options.sharedMemory !== false && canShareMemory();

  if (options.wasmModule !== undefined) {
    const module = pickModule(options.wasmModule, options.relaxed);
    // The module's memory import is fixed at compile time: link it to the kind it accepts.
    const errors: string[] = [];
    for (const shared of wantShared ? [true, false] : [false]) {
      const made = makeMemory(initialPages, shared);
      if (!made) {
        errors.push(`cannot create a${shared ? " shared" : "n unshared"} WebAssembly memory of ${initialPages} pages`);
        continue;
      }
      try {
        const instance = await instantiate(module, made.memory);
        return { module, instance, ...made, shared };
      } catch (e) {
        errors.push(`${shared ? "shared" : "unshared"} memory: ${message(e)}`);
      }
    }
    throw new AutoencoderKLError(
      "options.wasmModule",
      `cannot instantiate the kernels (${errors.join("; ")})` +
        (wantShared
          ? ""
          : "; the shipped kernels import a shared memory, which this runtime cannot create (or sharedMemory: false " +
            "forbids): pass wasmBytes or wasmUrl instead, and the library switches the import to an unshared memory"),
    );
  }

  if (typeof WebAssembly !== "object" || !wasmSimdSupported()) {
    throw new AutoencoderKLError("wasm backend", "this JavaScript engine does not support WebAssembly SIMD");
  }
  const relaxedOk = wasmRelaxedSimdSupported();
  if (options.relaxed === true && !relaxedOk && options.wasmBytes === undefined) {
    throw new AutoencoderKLError(
      "wasm backend: relaxed",
      "relaxed SIMD is not supported by this engine (Node 20: run with --experimental-wasm-relaxed-simd)",
    );
  }
  const relaxed = options.relaxed === "auto" ? relaxedOk : options.relaxed;
  let bytes = await loadBytes(relaxed, options);
  // one shared memory when the platform has them (needed for threads, harmless for one), else unshared
  let made = wantShared ? makeMemory(initialPages, true) : null;
  const shared = made !== null;
  if (!made) made = makeMemory(initialPages, false);
  if (!made)
    throw new AutoencoderKLError("wasm backend", `cannot create a WebAssembly memory of ${initialPages} pages`);
  try {
    if (importsSharedMemory(bytes) !== shared) bytes = withSharedMemoryImport(bytes, shared);
  } catch (e) {
    throw new AutoencoderKLError("options.wasmBytes", `is not the kernels' WebAssembly module: ${message(e)}`, {
      cause: e,
    });
  }

  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as BufferSource);
  } catch (e) {
    throw new AutoencoderKLError(
      "wasm backend",
      `cannot compile the kernels: ${message(e)} (where WebAssembly code generation is disabled, as in Cloudflare ` +
        "Workers and Vercel Edge, pass wasmModule: the .wasm imported as a precompiled module)",
      { cause: e },
    );
  }
  try {
    const instance = await instantiate(module, made.memory);
    return { module, instance, ...made, shared };
  } catch (e) {
    throw new AutoencoderKLError("wasm backend", `cannot instantiate the kernels: ${message(e)}`, { cause: e });
  }
}
