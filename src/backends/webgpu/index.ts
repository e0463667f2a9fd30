export { createWebGPUBackend, WebGPUKernels, type WebGPUBackendOptions, type WebGPULimits } from "./backend.js";
export { getWebGPU } from "./gpu.js";
