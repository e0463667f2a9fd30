// The core import: no runtime dependencies, no static Node built-ins (Node-only reading is behind dynamic imports).

export type { BackendName, BufferDtype, DeviceBuffer, Kernels } from "./backends/kernels.js";
export type { BackendChoice } from "./backends/select.js";
export { selectBackend } from "./backends/select.js";
export type { KernelSourceOptions, WasmModuleOption } from "./backends/wasm/loader.js";
export { AbortError, AutoencoderKLError } from "./errors.js";
export type { Components, ComponentsOptions } from "./io/components.js";
export type { DecodedImage, ImageFormat, ReadImageOptions } from "./io/image/index.js";
export { cropTo, DEFAULT_MAX_PIXELS, decodeImage, padToMultiple, readImage, writePng } from "./io/image/index.js";
export { readSafetensors, writeSafetensors } from "./io/safetensors.js";
export type {
  BackendOptions,
  ForwardOptions,
  FromPretrainedOptions,
  FromSingleFileOptions,
  LoadingOptions,
  MemoryOptions,
  SavePretrainedOptions,
  TilingOptions,
  WeightDtype,
  WeightOptions,
} from "./models/autoencoder-kl/autoencoder-kl.js";
export { AutoencoderKL } from "./models/autoencoder-kl/autoencoder-kl.js";
export type { AutoencoderKLConfig } from "./models/autoencoder-kl/config.js";
export { DEFAULT_CONFIG, resolveConfig } from "./models/autoencoder-kl/config.js";
export { DiagonalGaussianDistribution } from "./models/autoencoder-kl/distribution.js";
export type { CheckpointArea, CheckpointStorage } from "./models/autoencoder-kl/exact-tiling.js";
export type { MemoryPlan } from "./models/autoencoder-kl/memory-plan.js";
export type { AttentionProcessor } from "./nn/attention.js";
export { AttnProcessor, FusedAttnProcessor, MemoryEfficientAttnProcessor } from "./nn/attention.js";
export type { Progress, RunOptions } from "./nn/context.js";
export { Tensor } from "./tensor/tensor.js";
