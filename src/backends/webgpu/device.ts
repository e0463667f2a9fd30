/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import { WebGPUKernels } from "./backend.js";
import { getWebGPU } from "./gpu.js";

/** The device limits the backend plans against; tests lower them to force chunked dispatches. */
export interface WebGPULimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

export interface WebGPUBackendOptions {
  /** Use this device (the caller owns it: dispose() does not destroy it). */
  device?: GPUDevice;
  /** Request the device from this adapter instead of the default one. */
  adapter?: GPUAdapter;
  /** Lower (never raise) the limits the backend plans against. */
  limits?: Partial<WebGPULimits>;
  /** f16 storage with f32 arithmetic when the device has `shader-f16`; ignored otherwise. */
  f16?: boolean;
}

/**
 * Creates the WebGPU backend. Without `device`, takes the adapter (or finds one through getWebGPU) and
 * requests a device with the adapter's largest buffer, binding and dispatch limits, plus `shader-f16` when
 * `f16` is asked for and available.
 */
export async function createWebGPUBackend(options: WebGPUBackendOptions = {}): Promise<WebGPUKernels> {
  let device = options.device;
  let adapter = options.adapter ?? null;
  let owns = false;
  if (!device) {
    if (!adapter) {
      const gpu = await getWebGPU();
      if (!gpu) {
        throw new AutoencoderKLError(
          'backend "webgpu"',
          "no WebGPU implementation: navigator.gpu is missing and the optional 'webgpu' package (Dawn for Node) could not be loaded",
        );
      }
      adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
      if (!adapter) {
        throw new AutoencoderKLError(
          'backend "webgpu"',
          "no GPU adapter available (requestAdapter returned null); without a GPU on Linux, a Vulkan driver such as SwiftShader with VK_ICD_FILENAMES set provides one",
        );
      }
    }
    const wantF16 = options.f16 === true && adapter.features.has("shader-f16");
    const L = adapter.limits;
    try {
      device = await adapter.requestDevice({
        requiredFeatures: wantF16 ? ["shader-f16"] : [],
        requiredLimits: {
          maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
          maxBufferSize: L.maxBufferSize,
          maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
        },
      });
    } catch (e) {
      throw new AutoencoderKLError('backend "webgpu"', `requestDevice failed: ${(e as Error).message}`, { cause: e });
    }
    owns = true;
  }
  const f16 = options.f16 === true && device.features.has("shader-f16");
  const info = (adapter as { info?: GPUAdapterInfo } | null)?.info;
  const name = info
    ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ")
    : undefined;
  return new WebGPUKernels(device, { adapter: name || undefined, ownsDevice: owns, f16, limits: options.limits });
}
