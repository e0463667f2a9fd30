// The browser demo: pick an image, see the reconstruction, the latent channels and the time taken.
// Uses the ESM bundle (npm run build:browser → dist/browser/) and the bundled demo model by URL.
// window.demo exposes the same steps to tests (test/browser.test.ts).
import { AutoencoderKL, Tensor, readImage, padToMultiple, cropTo, tensorToPixels } from "../../dist/browser/autoencoderkl.js";

const MODEL_URL = new URL("../../assets/demo-vae/", import.meta.url).href;
const DEMO_PHOTO = new URL("../../assets/chelsea.png", import.meta.url).href;
const $ = (id) => document.getElementById(id);

let model = null; // { vae, backend choice, load time }

function status(text) {
  $("status").textContent = text;
}

async function getModel(backend) {
  if (model && model.backend === backend) return model;
  model?.vae.dispose();
  const t0 = performance.now();
  const vae = await AutoencoderKL.fromPretrained(MODEL_URL, { backend });
  model = { vae, backend, loadMs: performance.now() - t0 };
  return model;
}

/** A tensor [1, C, H, W] in [-1, 1] (C = 3, or 1 for grey) drawn on a canvas. */
function draw(canvas, tensor) {
  const { pixels, width, height, channels } = tensorToPixels(tensor);
  canvas.width = width;
  canvas.height = height;
  const img = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) img.data[i * 4 + c] = pixels[i * channels + (channels === 3 ? c : 0)];
    img.data[i * 4 + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function drawLatents(z) {
  const [, c, h, w] = z.shape;
  const box = $("latents");
  box.replaceChildren();
  for (let k = 0; k < c; k++) {
    const plane = z.data.subarray(k * h * w, (k + 1) * h * w);
    let lo = Infinity, hi = -Infinity;
    for (const v of plane) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const span = hi - lo || 1;
    const grey = new Float32Array(h * w);
    for (let i = 0; i < grey.length; i++) grey[i] = ((plane[i] - lo) / span) * 2 - 1;
    const canvas = document.createElement("canvas");
    canvas.title = `channel ${k}: ${lo.toFixed(2)} … ${hi.toFixed(2)}`;
    draw(canvas, new Tensor(grey, [1, 1, h, w]));
    box.append(canvas);
  }
  $("latent-shape").textContent = `[${z.shape.join(", ")}]`;
}

/** PSNR over all RGB values of the 8-bit pictures, as the project defines it. */
function psnr(a, b) {
  const pa = tensorToPixels(a).pixels, pb = tensorToPixels(b).pixels;
  let se = 0;
  for (let i = 0; i < pa.length; i++) se += (pa[i] - pb[i]) ** 2;
  const mse = se / pa.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/**
 * Encode + decode image bytes (PNG or JPEG). Any size works: the image is padded by edge replication to
 * a multiple of 8 and the reconstruction cropped back. Returns numbers for the page and for tests.
 */
async function roundtrip(bytes, { backend = $("backend").value, crop } = {}) {
  status("Loading the model…");
  const m = await getModel(backend);
  let x = readImage(bytes);
  if (crop) x = cropTo(x, Math.min(crop.height, x.shape[2]), Math.min(crop.width, x.shape[3]));
  const [, , h, w] = x.shape;
  draw($("original"), x);
  const onProgress = ({ stage, done, total }) => status(`${stage} ${done}/${total}`);
  const t0 = performance.now();
  const { latentDist } = await m.vae.encode(padToMultiple(x, m.vae.downscaleFactor), { onProgress });
  const t1 = performance.now();
  const z = latentDist.mode();
  const { sample } = await m.vae.decode(z, { onProgress });
  const t2 = performance.now();
  const y = cropTo(sample, h, w);
  draw($("reconstruction"), y);
  drawLatents(z);
  const result = {
    width: w,
    height: h,
    backend: m.vae.backend,
    psnr: psnr(x, y),
    latentShape: z.shape,
    loadMs: m.loadMs,
    encodeMs: t1 - t0,
    decodeMs: t2 - t1,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
  };
  $("times").innerHTML = [
    ["backend", `${m.vae.backend} (${m.vae.backendDescription})`],
    ["model load", `${m.loadMs.toFixed(0)} ms`],
    ["encode", `${result.encodeMs.toFixed(0)} ms`],
    ["decode", `${result.decodeMs.toFixed(0)} ms`],
    ["PSNR", `${result.psnr.toFixed(2)} dB`],
  ].map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
  status(`${w}×${h}: PSNR ${result.psnr.toFixed(2)} dB, encode ${result.encodeMs.toFixed(0)} ms, decode ${result.decodeMs.toFixed(0)} ms`);
  return result;
}

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Runs `worker.js` (a module Web Worker importing the same bundle) and resolves with its reply. */
function inWorker(message) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (e) => {
      worker.terminate();
      e.data.error ? reject(new Error(e.data.error)) : resolve(e.data);
    };
    worker.onerror = (e) => {
      worker.terminate();
      reject(new Error(e.message || "worker failed"));
    };
    worker.postMessage({ ...message, modelUrl: MODEL_URL });
  });
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    status(`Error: ${e.message}`);
    console.error(e);
    throw e;
  }
}

$("file").addEventListener("change", async (e) => {
  const file = e.target.files?.[0];
  if (file) await guarded(async () => roundtrip(new Uint8Array(await file.arrayBuffer())));
});
$("demo").addEventListener("click", () => guarded(async () => roundtrip(await fetchBytes(DEMO_PHOTO))));

window.demo = {
  roundtrip: (bytes, options) => guarded(() => roundtrip(bytes, options)),
  roundtripUrl: (url, options) => guarded(async () => roundtrip(await fetchBytes(url), options)),
  inWorker,
  DEMO_PHOTO,
  MODEL_URL,
};
status("Ready: pick an image or use the demo photo.");
document.body.dataset.ready = "true";
