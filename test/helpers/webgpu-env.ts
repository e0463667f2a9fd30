/// <reference types="@webgpu/types" />
import { existsSync } from "node:fs";
import { getWebGPU } from "../../src/backends/webgpu/index.js";

/** Debian's chromium package ships SwiftShader's Vulkan ICD: a CPU WebGPU adapter for machines without a GPU. */
export const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

export type TestGPU = { adapter: GPUAdapter; reason?: undefined } | { adapter?: undefined; reason: string };

let probe: Promise<TestGPU> | undefined;

/**
 * Finds a WebGPU adapter for tests: a real GPU when Dawn sees one, else SwiftShader (VK_ICD_FILENAMES is
 * pointed at it before Dawn starts, unless the caller set it). Resolves with the reason when there is none,
 * so suites can skip by name instead of failing.
 */
export function acquireTestGPU(): Promise<TestGPU> {
  probe ??= (async (): Promise<TestGPU> => {
    if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const gpu = await getWebGPU();
    if (!gpu)
      return { reason: "no WebGPU implementation (navigator.gpu missing and the 'webgpu' package did not load)" };
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      return {
        reason:
          `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? "unset"}; ` +
          `install Debian's chromium and libvulkan1 for SwiftShader at ${SWIFTSHADER_ICD})`,
      };
    }
    return { adapter };
  })();
  return probe;
}
