// Correctness of bench/peer-adapter.mjs against the peers: on the reference cases that ../shared/peers'
// export wrote ($PEERS_DIR/onnx/ref.json: PyTorch float32 outputs of the same weights) the adapter's output
// is compared with PyTorch's and with onnxruntime-node's on the same input.
//   node bench/check-peer-adapter.mjs [--threads 2] [--relaxed] [--tol 1e-3]
// Needs ../shared/peers/setup.sh to have run (ONNX graphs, weights, onnxruntime-node under $PEERS_DIR).
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { PEERS_DIR, parseArgs, ROOT } from "./common.mjs";

const args = parseArgs(process.argv.slice(2), ["relaxed", "noOrt"]);
const threads = +(args.threads ?? 2),
  tol = +(args.tol ?? 1e-3);
if (args.relaxed) process.env.AUTOENCODERKL_RELAXED = "1";
const ONNX_DIR = process.env.PEERS_ONNX_DIR || path.join(PEERS_DIR, "onnx");
const PEERS_SRC = process.env.PEERS_SRC || path.resolve(ROOT, "../shared/peers");
const refs = JSON.parse(readFileSync(path.join(ONNX_DIR, "ref.json"), "utf8"));
const readF32 = (f) => {
  const b = readFileSync(path.join(ONNX_DIR, f));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const maxAbsDiff = (a, b) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const { create } = await import(pathToFileURL(path.join(ROOT, "bench/peer-adapter.mjs")).href);
let ort = null;
if (!args.noOrt) {
  const { loadOrt } = await import(pathToFileURL(path.join(PEERS_SRC, "ortload.mjs")).href);
  ort = await loadOrt("node");
}
const runners = {},
  sessions = {};
let worst = 0;
for (const [name, r] of Object.entries(refs)) {
  runners[r.graph] ??= await create({ graph: r.graph, threads, onnxDir: ONNX_DIR });
  const x = readF32(`ref_${name}_in.bin`),
    yTorch = readF32(`ref_${name}_out.bin`);
  const t0 = performance.now();
  const y = await runners[r.graph].run(x, r.in_shape);
  const ms = performance.now() - t0;
  if (JSON.stringify(y.dims) !== JSON.stringify(r.out_shape))
    throw new Error(`${name}: dims ${y.dims} vs ${r.out_shape}`);
  const dTorch = maxAbsDiff(y.data, yTorch);
  let line = `${name} ${JSON.stringify(r.in_shape)} → ${JSON.stringify(y.dims)}  max|ours − PyTorch| = ${dTorch.toExponential(2)}`;
  worst = Math.max(worst, dTorch);
  if (ort) {
    sessions[r.graph] ??= await ort.InferenceSession.create(path.join(ONNX_DIR, `${r.graph}.onnx`), {
      intraOpNumThreads: threads,
    });
    const s = sessions[r.graph];
    const o = (await s.run({ [s.inputNames[0]]: new ort.Tensor("float32", x, r.in_shape) }))[s.outputNames[0]];
    const dOrt = maxAbsDiff(y.data, o.data);
    worst = Math.max(worst, dOrt);
    line += `  max|ours − onnxruntime-node| = ${dOrt.toExponential(2)}`;
  }
  console.log(`${line}  (max|ref| ${r.out_absmax.toFixed(3)}; ours ${ms.toFixed(0)} ms)`);
}
const impl = Object.values(runners)[0]?.info?.impl;
for (const rr of Object.values(runners)) rr.dispose();
console.log(`${impl}: worst max|diff| = ${worst.toExponential(2)} ${worst < tol ? "OK" : "FAIL"} (tolerance ${tol})`);
process.exit(worst < tol ? 0 : 1);
