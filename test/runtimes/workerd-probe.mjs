// A module Worker around the probe (embedded.mjs): the kernels imported as precompiled modules, as
// wrangler bundles them, and the model and photo from the static-assets binding (ASSETS = assets/).

import { loadWithout, runProbe } from "./embedded.mjs";
import relaxed from "./kernels-relaxed.wasm";
// the same kernels as plain bytes (a Data module): compiling them must be refused here
import simdBytes from "./kernels-simd.bin";
import simd from "./kernels-simd.wasm";

async function asset(env, path) {
  const res = await env.ASSETS.fetch(new URL(path, "http://assets.local"));
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

export default {
  async fetch(request, env) {
    const config = JSON.parse(new TextDecoder().decode(await asset(env, "/demo-vae/config.json")));
    if (new URL(request.url).pathname === "/without-module") {
      return Response.json({
        noLocation: await loadWithout(config),
        fromBytes: await loadWithout(config, { wasmBytes: simdBytes }),
      });
    }
    const body = await runProbe(
      {
        config,
        weights: await asset(env, "/demo-vae/diffusion_pytorch_model.safetensors"),
        png: await asset(env, "/chelsea.png"),
        wasmModule: { simd, relaxed },
      },
      { importMetaUrl: String(import.meta.url) },
    );
    return new Response(body, { headers: { "content-type": "application/octet-stream" } });
  },
};
