// autoencoderkl as a "mod:" peer of ../shared/peers (adapter interface in its README), so that its harness
// times this engine in the same run as onnxruntime-node, onnxruntime-web and PyTorch:
//
//   npm run build
//   EXTRA_PEERS=mod:$PWD/bench/peer-adapter.mjs WORKLOADS=decode_32,encode_256 THREADS=2 ../shared/peers/run.sh
//   node ../shared/peers/bench_ort.mjs --peers mod:$PWD/bench/peer-adapter.mjs --threads 1 --workloads smoke_dec8 --runs 1
//
// Weights: `${onnxDir}/diffusers`, the diffusers folder the peers' export writes next to decoder.onnx and
// encoder.onnx (the same weights), loaded with AutoencoderKL.fromPretrained on the wasm backend with the
// harness's thread count.
//   decoder: z [1,4,h,w] → image [1,3,8h,8w]   = post_quant_conv + decoder          (vae.decode)
//   encoder: image [1,3,H,W] → moments [1,8,H/8,W/8] = encoder + quant_conv, returned as mean ++ logvar
// Note on the encoder's logvar: our posterior (like diffusers' DiagonalGaussianDistribution) clamps logvar
// to [-30, 20], while the ONNX graphs return the raw quant_conv output. The two differ only where the raw
// value is outside that range, which does not happen with the peers' random weights (|logvar| ≪ 20).
//
// Instruction set: Node 20 validates relaxed SIMD only with --experimental-wasm-relaxed-simd, which the
// harness does not pass, so by default this runs the plain SIMD build (what a Node 20 user gets without
// flags). With AUTOENCODERKL_RELAXED=1 (or through bench/peer-adapter-relaxed.mjs) the adapter turns the
// V8 flag on at run time (v8.setFlagsFromString, before any kernel is compiled) and insists on the relaxed
// build. Check the `impl` field of the harness's JSON to see which one ran.
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";

const DIST = new URL("../dist/", import.meta.url);

/**
 * The host copy of the weights (file bytes and tensors) is garbage once they sit in WebAssembly memory; the
 * harness resets its peak-RSS counter right after create(), so collect it now rather than whenever V8 gets
 * to it, or the "inference" peak would include ~0.3-0.7 GB of dead buffers.
 */
function collectGarbage() {
  try {
    v8.setFlagsFromString("--expose-gc");
    vm.runInNewContext("gc")();
  } catch {
    // not essential
  }
}

export async function create({ graph, threads, onnxDir }) {
  if (graph !== "decoder" && graph !== "encoder") throw new Error(`peer-adapter: unknown graph ${graph}`);
  const relaxed = /^(1|true|yes)$/i.test(process.env.AUTOENCODERKL_RELAXED ?? "");
  if (relaxed) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  const { AutoencoderKL, Tensor } = await import(new URL("index.js", DIST).href);
  const { createWasmBackend } = await import(new URL("backends/wasm/index.js", DIST).href);
  const weights = path.join(onnxDir, "diffusers");
  let vae,
    kernels = null;
  if (relaxed) {
    kernels = await createWasmBackend({ threads, relaxed: true });
    vae = await AutoencoderKL.fromPretrained(weights, { kernels });
  } else {
    vae = await AutoencoderKL.fromPretrained(weights, { backend: "wasm", threads });
  }
  if (vae.backend !== "wasm") throw new Error(`peer-adapter: expected the wasm backend, got ${vae.backendDescription}`);
  collectGarbage();
  return {
    info: { impl: `autoencoderkl ${vae.backendDescription}`, weights },
    async run(data, dims) {
      const x = new Tensor(data, dims);
      if (graph === "decoder") {
        const { sample } = await vae.decode(x);
        return { data: sample.data, dims: sample.shape };
      }
      const { latentDist } = await vae.encode(x);
      const { mean, logvar } = latentDist;
      const [b, c, h, w] = mean.shape;
      const plane = c * h * w;
      const out = new Float32Array(2 * b * plane);
      for (let i = 0; i < b; i++) {
        out.set(mean.data.subarray(i * plane, (i + 1) * plane), 2 * i * plane);
        out.set(logvar.data.subarray(i * plane, (i + 1) * plane), (2 * i + 1) * plane);
      }
      return { data: out, dims: [b, 2 * c, h, w] };
    },
    dispose() {
      vae.dispose();
      kernels?.dispose();
    },
  };
}
