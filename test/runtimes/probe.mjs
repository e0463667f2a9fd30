// Runs inside every runtime under test (Node, Deno, Bun, workerd, edge-runtime): decodes a fixed latent and
// encodes a crop of the bundled photo with the demo model, and returns the results as safetensors bytes
// (the runtime's own writer), so the test compares them with Node's on the same instruction set.
// Plain JavaScript, no imports: each runtime's entry hands in the library (`lib`).

/** The fixed latent: [1, 16, 8, 8] (a 64×64 image), values from a seeded LCG in [-2, 2). */
export const LATENT_SHAPE = [1, 16, 8, 8];
/** The photo is cropped to this (top left), a multiple of 8. */
export const CROP = { height: 64, width: 96 };

export function fixedLatent(Tensor, shape = LATENT_SHAPE, seed = 1234) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32) * 4 - 2;
  }
  return new Tensor(data, shape);
}

/** "relaxed-simd" | "simd" | other, from a backend description such as "wasm (relaxed-simd, 1 thread)". */
export function instructionSetOf(description) {
  const m = /^wasm \(([a-z-]+),/.exec(description);
  return m ? m[1] : description;
}

/**
 * vae: a loaded demo model; png: the photo's bytes. Returns safetensors bytes holding `sample` (decode of
 * the fixed latent), `mean` and `logvar` (encode of the crop), with the backend in the metadata.
 */
export async function probe(lib, vae, png, metadata = {}) {
  const { sample } = await vae.decode(fixedLatent(lib.Tensor));
  const photo = lib.cropTo(await lib.readImage(png), CROP.height, CROP.width);
  const { latentDist } = await vae.encode(photo);
  return lib.writeSafetensors(
    { sample, mean: latentDist.mean, logvar: latentDist.logvar },
    { backend: vae.backendDescription, instructionSet: instructionSetOf(vae.backendDescription), ...metadata },
  );
}
