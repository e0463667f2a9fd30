export { WebGPUKernels } from "./backend.js";
export { createWebGPUBackend, type WebGPUBackendOptions, type WebGPULimits } from "./device.js";
export { getWebGPU, isSoftwareAdapter } from "./gpu.js";
