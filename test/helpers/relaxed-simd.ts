import v8 from "node:v8";
import { wasmRelaxedSimdSupported } from "../../src/backends/wasm/index.js";

/**
 * Node 20 compiles relaxed SIMD only behind a V8 flag, and vitest runs test files in a plain `node`: this
 * switches the flag on for the importing file's process, before any module is compiled (tests only; the
 * library never touches flags). Returns whether relaxed SIMD is available, and why not when it is not.
 */
export function enableRelaxedSimd(): { ok: boolean; reason?: string } {
  if (!wasmRelaxedSimdSupported()) {
    try {
      v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
    } catch {
      // flags locked: reported below
    }
  }
  return wasmRelaxedSimdSupported()
    ? { ok: true }
    : {
        ok: false,
        reason: "WebAssembly.validate rejects relaxed_madd in this engine, even with --experimental-wasm-relaxed-simd",
      };
}
