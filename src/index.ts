// The core import: no runtime dependencies, no static Node built-ins (Node-only reading is behind dynamic imports).
export { AutoencoderKL } from "./models/autoencoder-kl/autoencoder-kl.js";
export type { BackendOptions, ForwardOptions, FromPretrainedOptions, LoadingOptions } from "./models/autoencoder-kl/autoencoder-kl.js";
export { DiagonalGaussianDistribution } from "./models/autoencoder-kl/distribution.js";
export { DEFAULT_CONFIG, resolveConfig } from "./models/autoencoder-kl/config.js";
export type { AutoencoderKLConfig } from "./models/autoencoder-kl/config.js";
export { Tensor } from "./tensor/tensor.js";
export { AutoencoderKLError, AbortError } from "./errors.js";
export type { Progress, RunOptions } from "./nn/context.js";
export type { AttentionProcessor } from "./nn/attention.js";
export { AttnProcessor } from "./nn/attention.js";
export { selectBackend } from "./backends/select.js";
export type { BackendChoice } from "./backends/select.js";
export type { BackendName, Kernels } from "./backends/kernels.js";
export { readSafetensors, writeSafetensors } from "./io/safetensors.js";
export { readImage, writePng, decodeImage, padToMultiple, cropTo, DEFAULT_MAX_PIXELS } from "./io/image/index.js";
export type { ReadImageOptions, DecodedImage, ImageFormat } from "./io/image/index.js";
export type { TilingOptions, FromSingleFileOptions, SavePretrainedOptions } from "./models/autoencoder-kl/autoencoder-kl.js";
export { MemoryEfficientAttnProcessor, FusedAttnProcessor } from "./nn/attention.js";
