// A Cloudflare Worker that decodes latents to a PNG: POST a safetensors file holding the tensor "latents"
// [1, C, h, w] (what `npx autoencoderkl encode` writes) and get the image back.
//
// Workers may not compile WebAssembly at run time, so the kernels are imported as modules that the
// platform compiles at deploy time, and handed to the library as `wasmModule`.
import { AutoencoderKL, AutoencoderKLError, readSafetensors, writePng } from "autoencoderkl";
import relaxed from "autoencoderkl/kernels-relaxed.wasm";
import simd from "autoencoderkl/kernels-simd.wasm";

/** Largest latent side accepted: 32 → a 256×256 image, which keeps the demo model well inside 128 MB. */
const MAX_LATENT_SIDE = 32;

let model = null; // one model per isolate, loaded by the first request
let queue = Promise.resolve(); // one decode at a time: concurrent requests share the isolate's memory

/** The model from the static-assets binding (public/model/), or from MODEL_URL when that is set. */
async function loadModel(env) {
  const options = { wasmModule: { simd, relaxed }, threads: 1 };
  if (env.MODEL_URL) return AutoencoderKL.fromPretrained(env.MODEL_URL, options);
  const get = async (name) => {
    const res = await env.ASSETS.fetch(new URL(`/model/${name}`, "https://assets.invalid"));
    if (!res.ok) throw new Error(`model/${name}: HTTP ${res.status} (copy a diffusers VAE folder to public/model/)`);
    return res;
  };
  const config = await (await get("config.json")).json();
  const weights = new Uint8Array(await (await get("diffusion_pytorch_model.safetensors")).arrayBuffer());
  const vae = await AutoencoderKL.fromConfig(config, options);
  await vae.loadStateDict(readSafetensors(weights, "model/diffusion_pytorch_model.safetensors").tensors);
  return vae;
}

async function decode(env, body) {
  model ??= loadModel(env).catch((e) => {
    model = null; // let the next request try again
    throw e;
  });
  const vae = await model;
  const { metadata, tensors } = readSafetensors(new Uint8Array(body), "request body");
  const z = tensors.get("latents") ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
  if (!z)
    throw new AutoencoderKLError(
      "request body",
      `needs a tensor "latents", found ${[...tensors.keys()].join(", ") || "none"}`,
    );
  const [, , h, w] = z.shape;
  if (z.shape.length !== 4 || h > MAX_LATENT_SIDE || w > MAX_LATENT_SIDE) {
    throw new AutoencoderKLError(
      "latents",
      `must be [1, C, h, w] with h, w ≤ ${MAX_LATENT_SIDE}, got [${z.shape.join(", ")}]`,
    );
  }
  if (metadata.latents === "scaled") {
    // undo the pipeline scaling `autoencoderkl encode` applied: z / scaling_factor + shift_factor
    const scale = Number(metadata.scaling_factor ?? vae.config.scaling_factor);
    const shift = Number(metadata.shift_factor ?? vae.config.shift_factor ?? 0);
    for (let i = 0; i < z.data.length; i++) z.data[i] = z.data[i] / scale + shift;
  }
  const run = queue.then(() => vae.decode(z));
  queue = run.catch(() => undefined);
  const { sample } = await run;
  return { png: await writePng(sample), backend: vae.backendDescription };
}

export default {
  async fetch(request, env) {
    if (request.method !== "POST") {
      return new Response('POST a safetensors file with the tensor "latents" [1, C, h, w]; the answer is a PNG.\n', {
        status: request.method === "GET" ? 200 : 405,
        headers: { "content-type": "text/plain; charset=utf-8", allow: "GET, POST" },
      });
    }
    try {
      const { png, backend } = await decode(env, await request.arrayBuffer());
      return new Response(png, { headers: { "content-type": "image/png", "x-backend": backend } });
    } catch (e) {
      const status = e instanceof AutoencoderKLError ? 400 : 500;
      return new Response(`${e instanceof Error ? e.message : String(e)}\n`, {
        status,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
  },
};
