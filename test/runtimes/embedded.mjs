// The probe for runtimes without a file system or a module URL (edge-runtime, workerd): bundled by the test
// with the library's sources into one script, it gets the model and the photo as bytes and the kernels as
// precompiled WebAssembly modules, as a Vercel Edge function or a Cloudflare Worker would.
import * as lib from "../../src/index.ts";
import { probe } from "./probe.mjs";

/** config: parsed config.json; weights, png: bytes; wasmModule: as fromConfig takes it. */
export async function runProbe({ config, weights, png, wasmModule }, metadata = {}) {
  const vae = await lib.AutoencoderKL.fromConfig(config, { wasmModule, threads: 1 });
  try {
    await vae.loadStateDict(lib.readSafetensors(weights, "demo-vae").tensors, "demo-vae");
    return await probe(lib, vae, png, metadata);
  } finally {
    vae.dispose();
  }
}

/** What loading the kernels with these options (no wasmModule) gives here: { name, message } of the error, or null. */
export async function loadWithout(config, options = {}) {
  try {
    const vae = await lib.AutoencoderKL.fromConfig(config, { backend: "wasm", threads: 1, ...options });
    vae.dispose();
    return null;
  } catch (e) {
    return { name: e?.name, message: String(e?.message ?? e) };
  }
}
