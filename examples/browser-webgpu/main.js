// The browser half of test/browser-webgpu.test.ts: decode the sdlike fixture latent through WebGPU with the
// browser bundle and compare with the diffusers reference, all in the page. The test calls
// window.webgpuCheck.* through playwright; a person can press "Run".
import { AutoencoderKL, readSafetensors } from "../../dist/browser/autoencoderkl.js";

const FIXTURES = new URL("../../test/fixtures/", location.href);
const status = document.getElementById("status");

/** What navigator.gpu offers here, or why nothing: { ok, reason?, adapter? }. */
async function probeAdapter() {
  if (!isSecureContext) return { ok: false, reason: "not a secure context (serve from 127.0.0.1 or https)" };
  if (!navigator.gpu) return { ok: false, reason: "navigator.gpu is missing (WebGPU disabled in this browser)" };
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { ok: false, reason: `requestAdapter threw: ${e?.message ?? e}` };
  }
  if (!adapter) return { ok: false, reason: "navigator.gpu.requestAdapter() returned null" };
  const i = adapter.info ?? {};
  return {
    ok: true,
    adapter: {
      vendor: i.vendor ?? "",
      architecture: i.architecture ?? "",
      device: i.device ?? "",
      description: i.description ?? "",
      isFallbackAdapter: Boolean(adapter.isFallbackAdapter ?? i.isFallbackAdapter),
      shaderF16: adapter.features.has("shader-f16"),
    },
  };
}

/** Same definitions as test/helpers/fixtures.ts compare(): NaN anywhere makes maxAbs NaN. */
function compare(got, want) {
  if (got.shape.join(",") !== want.shape.join(",")) throw new Error(`shape [${got.shape}] != expected [${want.shape}]`);
  let maxAbs = 0,
    num = 0,
    den = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = got.data[i] - want.data[i];
    if (!(Math.abs(d) <= maxAbs)) maxAbs = Math.abs(d);
    num += d * d;
    den += want.data[i] ** 2;
  }
  return { maxAbs, relL2: Math.sqrt(num) / Math.sqrt(den || 1) };
}

function toBase64(f32) {
  const bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * Loads the model folder by URL on WebGPU, decodes input.z from the case file and compares with
 * expected.sample. Returns the errors, the backend, timings and the decoded data (base64 float32 LE) so the
 * caller can check the comparison itself.
 */
async function decodeFixture({
  modelUrl = new URL("models/sdlike/", FIXTURES).href,
  caseUrl = new URL("cases/sdlike-decode.safetensors", FIXTURES).href,
} = {}) {
  const t0 = performance.now();
  const vae = await AutoencoderKL.fromPretrained(modelUrl, { backend: "webgpu" });
  try {
    const res = await fetch(caseUrl);
    if (!res.ok) throw new Error(`${caseUrl}: HTTP ${res.status}`);
    const { tensors } = readSafetensors(new Uint8Array(await res.arrayBuffer()));
    const z = tensors.get("input.z");
    const want = tensors.get("expected.sample");
    if (!z || !want)
      throw new Error(`${caseUrl}: needs input.z and expected.sample, has ${[...tensors.keys()].join(", ")}`);
    const t1 = performance.now();
    const { sample } = await vae.decode(z);
    const t2 = performance.now();
    return {
      backend: vae.backend,
      ...compare(sample, want),
      zShape: z.shape,
      shape: sample.shape,
      loadMs: t1 - t0,
      decodeMs: t2 - t1,
      data: toBase64(sample.data),
    };
  } finally {
    vae.dispose();
  }
}

window.webgpuCheck = { probeAdapter, decodeFixture };

document.getElementById("run").addEventListener("click", async () => {
  status.textContent = "Running…";
  try {
    const probe = await probeAdapter();
    if (!probe.ok) {
      status.textContent = `No WebGPU adapter: ${probe.reason}`;
      return;
    }
    const r = await decodeFixture();
    status.textContent =
      `adapter ${JSON.stringify(probe.adapter)}\nbackend ${r.backend}, z [${r.zShape}] → [${r.shape}]\n` +
      `max_abs ${r.maxAbs.toExponential(3)} (≤ 5e-4), rel_l2 ${r.relL2.toExponential(3)} (≤ 1e-4)\n` +
      `load ${r.loadMs.toFixed(0)} ms, decode ${r.decodeMs.toFixed(0)} ms`;
  } catch (e) {
    status.textContent = `Failed: ${e?.stack ?? e}`;
  }
});
document.body.dataset.ready = "true";
status.textContent = "Ready.";
