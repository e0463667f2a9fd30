// A Vercel Edge Function: POST a safetensors file with the tensor "latents" [1, C, h, w] to /api/decode
// and get the decoded PNG. The Edge runtime may not compile WebAssembly from bytes, so the kernels are
// imported with `?module` (compiled at deploy time) and handed to the library as `wasmModule`.
import { AutoencoderKL, AutoencoderKLError, readSafetensors, writePng } from "autoencoderkl";
import relaxed from "autoencoderkl/kernels-relaxed.wasm?module";
import simd from "autoencoderkl/kernels-simd.wasm?module";

export const config = { runtime: "edge" };

/** Largest latent side accepted: 32 → 256×256 images, inside the Edge runtime's memory. */
const MAX_LATENT_SIDE = 32;

let model = null; // one model per instance, loaded by the first request

export default async function handler(request) {
  if (request.method !== "POST") return new Response("POST latents as safetensors\n", { status: 405 });
  try {
    // the model is a static file of this deployment (public/model/), or any diffusers folder by URL
    model ??= AutoencoderKL.fromPretrained(globalThis.process?.env?.MODEL_URL || new URL("/model/", request.url).href, {
      wasmModule: { simd, relaxed },
      threads: 1,
    }).catch((e) => {
      model = null;
      throw e;
    });
    const vae = await model;
    const { tensors } = readSafetensors(new Uint8Array(await request.arrayBuffer()), "request body");
    const z = tensors.get("latents");
    if (z?.shape.length !== 4 || z.shape[2] > MAX_LATENT_SIDE || z.shape[3] > MAX_LATENT_SIDE) {
      throw new AutoencoderKLError(
        "request body",
        `needs a tensor "latents" [1, C, h, w] with h, w ≤ ${MAX_LATENT_SIDE}`,
      );
    }
    const { sample } = await vae.decode(z);
    return new Response(await writePng(sample), {
      headers: { "content-type": "image/png", "x-backend": vae.backendDescription },
    });
  } catch (e) {
    return new Response(`${e?.message ?? e}\n`, { status: e instanceof AutoencoderKLError ? 400 : 500 });
  }
}
