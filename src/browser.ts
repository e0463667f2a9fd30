// The browser (and Web Worker) entry: the core library plus the image codecs, which are plain
// TypeScript with no Node built-ins. scripts/build-browser.mjs bundles this file into
// dist/browser/autoencoderkl.js, which loads the WASM kernels from the package's build/ (or wasmModule/
// wasmBytes/wasmUrl); its types are this file's, dist/browser.d.ts.
export * from "./index.js";
export type { DecodedImage, ImageFormat, ReadImageOptions } from "./io/image/index.js";
export {
  cropTo,
  DEFAULT_MAX_PIXELS,
  decodeImage,
  detectImageFormat,
  encodePngPixels,
  padToMultiple,
  readImage,
  tensorToPixels,
  writePng,
} from "./io/image/index.js";
