// Encode an image to latents and decode it back, in Bun (the same library as in Node: kernels from the
// package's build/, threads on worker_threads).
//   bun main.js <diffusers VAE folder> <image.png|jpg> [out.png]
import { AutoencoderKL, cropTo, padToMultiple, readImage, writePng } from "autoencoderkl";

const [model, image, out = "roundtrip.png"] = process.argv.slice(2);
if (!model || !image) {
  console.error("usage: bun main.js <model folder> <image> [out.png]");
  process.exit(2);
}
const vae = await AutoencoderKL.fromPretrained(model);
const x = await readImage(await Bun.file(image).bytes());
const [, , h, w] = x.shape;
const t0 = performance.now();
const { latentDist } = await vae.encode(padToMultiple(x, vae.downscaleFactor));
const { sample } = await vae.decode(latentDist.mode());
await Bun.write(out, await writePng(cropTo(sample, h, w)));
console.log(
  `${vae.backendDescription}: ${w}×${h} → latents [${latentDist.mean.shape.join(", ")}] → ${out} in ${(performance.now() - t0).toFixed(0)} ms`,
);
vae.dispose();
