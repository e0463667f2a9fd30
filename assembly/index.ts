// Entry point of both builds (kernels-simd.wasm, kernels-relaxed.wasm): the same source, compiled with and
// without `--enable relaxed-simd` (see common.ts: madd). Every export takes byte offsets into the imported
// memory and sizes; nothing here allocates. Work-splitting kernels take (tid, nthreads) last.
export { RELAXED } from "./common";
export { add, activation, upsampleNearest2x, transpose, channelAffine, copy2d } from "./elementwise";
export { groupNorm } from "./norm";
export { linear, matmul, matmulScratchBytes } from "./gemm";
export { softmax, attention, attentionScratchBytes } from "./attention";
export { conv2d, conv2dPack, conv2dScratchBytes } from "./conv";
export { winograd, winogradPack, winogradScratchBytes } from "./winograd";
export { widenHalf } from "./half";
export { winograd4, winograd4Pack, winograd4ScratchBytes } from "./winograd4";

/** First byte the JS allocator may hand out (static data ends below it). */
export function heapBase(): usize {
  return __heap_base;
}
