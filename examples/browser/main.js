// The browser demo: pick an image, see the reconstruction, the latent channels and the time taken.
// Uses the ESM bundle (npm run build:browser → dist/browser/) and the bundled demo model by URL.
// window.demo exposes the same steps to tests (test/browser.test.ts).
import {
  AbortError,
  AutoencoderKL,
  cropTo,
  padToMultiple,
  readImage,
  Tensor,
  tensorToPixels,
} from "../../dist/browser/autoencoderkl.js";

const MODEL_URL = new URL("../../assets/demo-vae/", import.meta.url).href;
const DEMO_PHOTO = new URL("../../assets/chelsea.png", import.meta.url).href;
const $ = (id) => document.getElementById(id);

let model = null; // { vae, backend choice, load time }
/** The run in flight: { controller, done } (done settles when it has stopped, however it ended). */
let current = null;

function status(text) {
  $("status").textContent = text;
}

/** Progress over the whole roundtrip: encode is the first ~40% of the work, decode the rest. */
function progress(stage, done, total) {
  const f = total > 0 ? done / total : 0;
  $("progress").value = stage === "encode" ? 0.4 * f : stage === "decode" ? 0.4 + 0.6 * f : 0;
  $("progress-label").textContent = stage ? `${stage} ${done}/${total}` : "";
}

/**
 * Cancels the run in flight (if any) and waits until it has stopped, so nothing it started — its
 * model, its pictures — is touched by the next one. The AbortSignal stops a pass at the next block.
 */
async function cancelCurrent(reason) {
  const run = current;
  if (!run) return;
  run.reason = reason;
  run.controller.abort();
  await run.done;
}

async function getModel(backend, signal) {
  if (model && model.backend === backend) return model;
  // Only called with no run in flight (cancelCurrent first), so disposing cannot pull a model from under one.
  model?.vae.dispose();
  model = null;
  const t0 = performance.now();
  const vae = await AutoencoderKL.fromPretrained(MODEL_URL, { backend });
  if (signal.aborted) {
    vae.dispose();
    throw new AbortError();
  }
  model = { vae, backend, loadMs: performance.now() - t0 };
  showThreads(vae);
  return model;
}

/** Says how many threads run and why: wasm threads need SharedArrayBuffer, i.e. a cross-origin isolated page. */
function showThreads(vae) {
  const threads = Number(/(\d+) threads?/.exec(vae.backendDescription)?.[1] ?? 1);
  let why;
  if (vae.backend !== "wasm") why = `the ${vae.backend} backend does not use worker threads.`;
  else if (globalThis.crossOriginIsolated)
    why = `this page is cross-origin isolated, so the kernels share one WebAssembly memory across ${threads} threads (one per core, from navigator.hardwareConcurrency).`;
  else {
    why =
      "this page is not cross-origin isolated: without the headers Cross-Origin-Opener-Policy: same-origin and " +
      "Cross-Origin-Embedder-Policy: require-corp the browser withholds SharedArrayBuffer, so the kernels run on one thread. " +
      "Serve the repository with `node examples/browser/serve.mjs` (it sends both headers) for threads.";
  }
  $("threads").textContent = `${vae.backendDescription}: ${why}`;
}

/** Clears what a cancelled or failed run left half-drawn, so old pictures never sit next to a new status. */
function clearResults() {
  for (const id of ["reconstruction", "heatmap"]) {
    const c = $(id);
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }
  $("latents").replaceChildren();
  $("latent-shape").textContent = "";
  $("times").replaceChildren();
  $("legend").hidden = true;
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
    let lo = Infinity,
      hi = -Infinity;
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

/** Error that saturates the heat map, in 8-bit levels (the same scale as the CLI's --compare picture). */
const HEAT_FULL_SCALE = 64;

/** Heat-map colour for an error of e levels: black → red → yellow → white at HEAT_FULL_SCALE. */
function heat(e) {
  const t = Math.min(1, e / HEAT_FULL_SCALE) * 3;
  if (t < 1) return [255 * t, 0, 0];
  if (t < 2) return [255, 255 * (t - 1), 0];
  return [255, 255, 255 * (t - 2)];
}

/** Mean absolute error over RGB per pixel as a heat map, plus its legend (colour bar with a scale). */
function drawHeatmap(x, y) {
  const a = tensorToPixels(x),
    b = tensorToPixels(y);
  const { width, height } = a;
  const canvas = $("heatmap");
  canvas.width = width;
  canvas.height = height;
  const img = new ImageData(width, height);
  let sum = 0;
  for (let i = 0; i < width * height; i++) {
    let e = 0;
    for (let c = 0; c < 3; c++) e += Math.abs(a.pixels[i * 3 + c] - b.pixels[i * 3 + c]);
    e /= 3;
    sum += e;
    const [r, g, bl] = heat(e);
    img.data.set([r, g, bl, 255], i * 4);
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
  const bar = $("legend-bar");
  const ctx = bar.getContext("2d");
  for (let px = 0; px < bar.width; px++) {
    const [r, g, bl] = heat((px / (bar.width - 1)) * HEAT_FULL_SCALE);
    ctx.fillStyle = `rgb(${r},${g},${bl})`;
    ctx.fillRect(px, 0, 1, bar.height);
  }
  $("legend-ticks").replaceChildren(
    ...[0, 16, 32, 48, 64].map((v) =>
      Object.assign(document.createElement("span"), { textContent: v === 64 ? "≥ 64" : String(v) }),
    ),
  );
  $("legend").hidden = false;
  return sum / (width * height);
}

/** PSNR over all RGB values of the 8-bit pictures, as the project defines it. */
function psnr(a, b) {
  const pa = tensorToPixels(a).pixels,
    pb = tensorToPixels(b).pixels;
  let se = 0;
  for (let i = 0; i < pa.length; i++) se += (pa[i] - pb[i]) ** 2;
  const mse = se / pa.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/**
 * Encode + decode image bytes (PNG or JPEG). Any size works: the image is padded by edge replication to
 * a multiple of 8 and the reconstruction cropped back. Returns numbers for the page and for tests.
 */
async function roundtrip(bytes, options = {}) {
  await cancelCurrent("a new run started");
  const controller = new AbortController();
  const run = { controller, reason: "" };
  let finished;
  run.done = new Promise((r) => (finished = r));
  current = run;
  try {
    return await roundtripRun(bytes, options, controller.signal);
  } catch (e) {
    if (e instanceof AbortError || controller.signal.aborted) {
      clearResults();
      progress("", 0, 0);
      status(`Cancelled: ${run.reason || "stopped"}.`);
      return { cancelled: true, reason: run.reason };
    }
    throw e;
  } finally {
    if (current === run) current = null;
    finished();
  }
}

async function roundtripRun(bytes, { backend = $("backend").value, crop }, signal) {
  status("Loading the model…");
  progress("", 0, 0);
  const m = await getModel(backend, signal);
  let x = readImage(bytes);
  if (crop) x = cropTo(x, Math.min(crop.height, x.shape[2]), Math.min(crop.width, x.shape[3]));
  const [, , h, w] = x.shape;
  clearResults();
  draw($("original"), x);
  const onProgress = ({ stage, done, total }) => {
    progress(stage, done, total);
    status(`${stage === "encode" ? "Encoding" : "Decoding"}… (${m.vae.backend})`);
  };
  const t0 = performance.now();
  const { latentDist } = await m.vae.encode(padToMultiple(x, m.vae.downscaleFactor), { onProgress, signal });
  const t1 = performance.now();
  const z = latentDist.mode();
  const { sample } = await m.vae.decode(z, { onProgress, signal });
  const t2 = performance.now();
  const y = cropTo(sample, h, w);
  draw($("reconstruction"), y);
  const meanError = drawHeatmap(x, y);
  drawLatents(z);
  progress("decode", 1, 1);
  $("progress-label").textContent = "done";
  const result = {
    width: w,
    height: h,
    backend: m.vae.backend,
    backendDescription: m.vae.backendDescription,
    psnr: psnr(x, y),
    meanError,
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
  ]
    .map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`)
    .join("");
  status(
    `${w}×${h}: PSNR ${result.psnr.toFixed(2)} dB, encode ${result.encodeMs.toFixed(0)} ms, decode ${result.decodeMs.toFixed(0)} ms`,
  );
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
$("sample").addEventListener("change", (e) => {
  if (e.target.value)
    guarded(async () => roundtrip(await fetchBytes(new URL(`../../assets/${e.target.value}`, import.meta.url).href)));
});
// A backend change cancels the run in flight (its pictures are cleared, not left stale next to a new
// status), then the next run loads the model on the new backend.
$("backend").addEventListener("change", async (e) => {
  const hadRun = current !== null;
  await cancelCurrent(`the backend changed to ${e.target.value}`);
  if (!hadRun) status(`Backend: ${e.target.value}. Pick an image or use the demo photo.`);
});

window.demo = {
  roundtrip: (bytes, options) => guarded(() => roundtrip(bytes, options)),
  roundtripUrl: (url, options) => guarded(async () => roundtrip(await fetchBytes(url), options)),
  inWorker,
  /** Cancels the run in flight as a backend change does; resolves when it has stopped. */
  cancel: (reason = "cancelled by the caller") => cancelCurrent(reason),
  setBackend: (value) => {
    $("backend").value = value;
    $("backend").dispatchEvent(new Event("change"));
  },
  DEMO_PHOTO,
  MODEL_URL,
};
status("Ready: pick an image or use the demo photo.");
document.body.dataset.ready = "true";
