import { AutoencoderKLError } from "../errors.js";
import type { Kernels } from "./kernels.js";
import { ReferenceKernels } from "./reference/index.js";
import { createWasmBackend, type KernelSourceOptions, wasmSimdSupported } from "./wasm/index.js";

export type BackendChoice = "auto" | "wasm" | "webgpu" | "reference";

export interface SelectOptions extends KernelSourceOptions {
  backend?: BackendChoice;
  threads?: number;
}

const CHOICES: readonly BackendChoice[] = ["auto", "wasm", "webgpu", "reference"];

/**
 * The one place that picks a backend. "auto": WebGPU when an adapter exists, else WASM (relaxed SIMD
 * when the runtime validates it, else plain SIMD), else the reference kernels.
 */
export async function selectBackend(options: SelectOptions = {}): Promise<Kernels> {
  const choice = options.backend ?? "auto";
  if (!CHOICES.includes(choice)) {
    throw new AutoencoderKLError(
      "options.backend",
      `unknown backend ${JSON.stringify(choice)}; expected one of ${CHOICES.join(", ")}`,
    );
  }
  if (
    options.threads !== undefined &&
    (!Number.isInteger(options.threads) || options.threads < 1 || options.threads > 256)
  ) {
    throw new AutoencoderKLError(
      "options.threads",
      `must be an integer from 1 to 256, got ${JSON.stringify(options.threads)}`,
    );
  }
  if (choice === "reference") return new ReferenceKernels();
  if (choice === "webgpu" || choice === "auto") {
    const webgpu = await tryWebGPU(choice === "webgpu");
    if (webgpu) return webgpu;
  }
  // kernels handed in were compiled by this engine, so it runs them (validate() may be refused where code
  // generation is disabled)
  const given = options.wasmModule !== undefined || options.wasmBytes !== undefined || options.wasmUrl !== undefined;
  if (given || (typeof WebAssembly === "object" && wasmSimdSupported())) {
    return createWasmBackend({
      threads: options.threads ?? (await availableCores()),
      relaxed: "auto",
      wasmModule: options.wasmModule,
      wasmBytes: options.wasmBytes,
      wasmUrl: options.wasmUrl,
    });
  }
  if (choice === "wasm")
    throw new AutoencoderKLError("options.backend", "wasm was asked for but this runtime has no WebAssembly SIMD");
  return new ReferenceKernels();
}

/**
 * A WebGPU adapter, or null. "auto" skips software adapters (SwiftShader and the like are slower than the
 * WASM kernels); "webgpu" takes whatever there is and fails with a clear error when there is none.
 */
async function tryWebGPU(required: boolean): Promise<Kernels | null> {
  const { createWebGPUBackend, getWebGPU, isSoftwareAdapter } = await import("./webgpu/index.js");
  if (required) return createWebGPUBackend();
  if (!(await mayHaveGpu())) return null;
  const gpu = await getWebGPU();
  const adapter = gpu ? await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null) : null;
  if (!adapter || isSoftwareAdapter(adapter)) return null;
  return createWebGPUBackend({ adapter });
}

/**
 * False where probing could only find a software adapter, which "auto" skips anyway: a Linux Node, Bun
 * or Deno process that sees no GPU device node (/dev/dri/renderD*, /dev/nvidia*). There the probe costs
 * ~100 ms and prints loader noise on stderr (Vulkan from Dawn; "XDG_RUNTIME_DIR is invalid" from Deno's
 * wgpu). Browsers (navigator.gpu without a process) and other platforms are always probed.
 */
async function mayHaveGpu(): Promise<boolean> {
  const g = globalThis as {
    navigator?: { gpu?: unknown };
    process?: { platform?: string };
    Deno?: {
      build?: { os?: string };
      permissions?: { querySync?(d: { name: string; path?: string }): { state: string } };
    };
  };
  const deno = g.Deno;
  if (deno) {
    if (deno.build?.os !== "linux") return true;
    // without read access to /dev, Deno would prompt or throw: treat the GPU as absent (backend: "webgpu" forces it)
    try {
      if (deno.permissions?.querySync?.({ name: "read", path: "/dev" }).state !== "granted") return false;
    } catch {
      return false;
    }
  } else if (g.navigator?.gpu || g.process?.platform !== "linux") {
    return true;
  }
  try {
    const spec = "node:fs/promises"; // Node, Bun and Deno all have it
    const fs = (await import(/* @vite-ignore */ spec)) as typeof import("node:fs/promises");
    const dri = await fs.readdir("/dev/dri").catch(() => [] as string[]);
    if (dri.some((name) => name.startsWith("renderD"))) return true;
    return (await fs.readdir("/dev")).some((name) => /^nvidia\d/.test(name));
  } catch {
    return !deno;
  }
}

/** Logical cores: navigator.hardwareConcurrency in browsers (and newer Node), os.availableParallelism in Node 20. */
async function availableCores(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (nav?.hardwareConcurrency) return nav.hardwareConcurrency;
  try {
    const spec = "node:os";
    const os = (await import(/* @vite-ignore */ spec)) as typeof import("node:os");
    return os.availableParallelism?.() ?? os.cpus().length;
  } catch {
    return 1;
  }
}
