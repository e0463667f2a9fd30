// A module Web Worker using the same bundle as the page: loads the demo model by URL and decodes the
// latents it is sent (or encodes + decodes an image), replying with plain numbers.
import { AutoencoderKL, readImage, Tensor, tensorToPixels } from "../../dist/browser/autoencoderkl.js";

self.onmessage = async (e) => {
  const { modelUrl, latents, shape, image, backend = "auto" } = e.data;
  try {
    const vae = await AutoencoderKL.fromPretrained(modelUrl, { backend });
    const t0 = performance.now();
    let out;
    if (image) {
      const { latentDist } = await vae.encode(readImage(image));
      out = (await vae.decode(latentDist.mode())).sample;
    } else {
      out = (await vae.decode(new Tensor(new Float32Array(latents), shape))).sample;
    }
    const ms = performance.now() - t0;
    const { pixels } = tensorToPixels(out);
    self.postMessage({
      backend: vae.backend,
      shape: out.shape,
      data: out.data,
      pixels,
      ms,
      inWorker: typeof document === "undefined",
    });
    vae.dispose();
  } catch (err) {
    self.postMessage({ error: String(err?.message ?? err) });
  }
};
