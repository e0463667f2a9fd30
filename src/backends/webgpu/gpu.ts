/// <reference types="@webgpu/types" preserve="true" />

let cached: Promise<GPU | null> | undefined;

/**
 * The WebGPU entry point: `navigator.gpu` where the runtime has one (browsers, Deno), else in Node the
 * optional `webgpu` package (Dawn). The package is imported through a variable so bundlers and the core
 * import graph never pull it (or Node built-ins) in. Resolves to null when neither is available.
 */
export function getWebGPU(): Promise<GPU | null> {
  cached ??= find();
  return cached;
}

async function find(): Promise<GPU | null> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) return null;
  try {
    const specifier = "webgpu";
    const mod = (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as {
      create: (options: string[]) => GPU;
      globals: Record<string, unknown>;
    };
    // Dawn's objects expect the WebGPU interface globals (GPUBufferUsage, ...); add only the missing ones.
    const g = globalThis as Record<string, unknown>;
    for (const [k, v] of Object.entries(mod.globals)) if (!(k in g)) g[k] = v;
    return mod.create([]);
  } catch {
    return null;
  }
}

/**
 * True for software adapters (SwiftShader, llvmpipe/lavapipe, WARP, or anything the implementation flags
 * as a fallback adapter): fine for tests, slower than the WASM SIMD kernels for real work.
 */
export function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const a = adapter as GPUAdapter & {
    isFallbackAdapter?: boolean;
    info?: GPUAdapterInfo & { isFallbackAdapter?: boolean };
  };
  if (a.isFallbackAdapter || a.info?.isFallbackAdapter) return true;
  const i = a.info;
  const text = i ? `${i.vendor} ${i.architecture} ${i.device} ${i.description}` : "";
  return /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|warp/i.test(text);
}
