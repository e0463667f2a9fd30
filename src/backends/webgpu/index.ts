export { createWebGPUBackend, WebGPUKernels, type WebGPUBackendOptions, type WebGPULimits } from "./backend.js";
export { getWebGPU, isSoftwareAdapter } from "./gpu.js";
