// Encode an image to latents and decode it back, in Deno. The package comes from npm (see deno.json);
// the kernels load from its build/ folder, threads run on Deno's worker_threads.
//   deno run --allow-read --allow-write main.js <diffusers VAE folder> <image.png|jpg> [out.png]
import { AutoencoderKL, cropTo, padToMultiple, readImage, writePng } from "autoencoderkl";

const [model, image, out = "roundtrip.png"] = Deno.args;
if (!model || !image) {
  console.error("usage: deno run --allow-read --allow-write main.js <model folder> <image> [out.png]");
  Deno.exit(2);
}
const vae = await AutoencoderKL.fromPretrained(model);
const x = await readImage(await Deno.readFile(image));
const [, , h, w] = x.shape;
const t0 = performance.now();
const { latentDist } = await vae.encode(padToMultiple(x, vae.downscaleFactor));
const { sample } = await vae.decode(latentDist.mode());
await Deno.writeFile(out, await writePng(cropTo(sample, h, w)));
console.log(
  `${vae.backendDescription}: ${w}×${h} → latents [${latentDist.mean.shape.join(", ")}] → ${out} in ${(performance.now() - t0).toFixed(0)} ms`,
);
vae.dispose();
