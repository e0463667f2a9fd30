import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_MAC } from "../backends/wasm/runtime.js";
import { gemmWebGPU } from "./matmul.js";
import { defineOp } from "./op.js";

export interface LinearArgs {
  x: DeviceBuffer; // [rows, inFeatures]
  /** [outFeatures, inFeatures] (PyTorch layout); may be an f16 buffer (allocHalf). */
  weight: DeviceBuffer;
  bias: DeviceBuffer | null; // [outFeatures]
  out: DeviceBuffer; // [rows, outFeatures]
  rows: number;
  inFeatures: number;
  outFeatures: number;
}

/** out = x @ weightᵀ + bias (PyTorch's nn.Linear layout). */
export const linear = defineOp<LinearArgs>({
  name: "linear",

  validate(r, p) {
    r.positive({ rows: p.rows, inFeatures: p.inFeatures, outFeatures: p.outFeatures });
    r.noAlias(p.out, { x: p.x, weight: p.weight, bias: p.bias });
    r.fits("x", p.x, p.rows * p.inFeatures);
    r.fitsWeight("weight", p.weight, p.outFeatures * p.inFeatures);
    if (p.bias) r.fits("bias", p.bias, p.outFeatures);
    r.fits("out", p.out, p.rows * p.outFeatures);
  },

  reference(rt, p) {
    const x = rt.data(p.x),
      w = rt.data(p.weight),
      out = rt.data(p.out),
      bias = p.bias ? rt.data(p.bias) : null;
    for (let r = 0; r < p.rows; r++) {
      for (let o = 0; o < p.outFeatures; o++) {
        let acc = bias ? bias[o] : 0;
        for (let i = 0; i < p.inFeatures; i++) acc += x[r * p.inFeatures + i] * w[o * p.inFeatures + i];
        out[r * p.outFeatures + o] = acc;
      }
    }
  },

  wasm(rt, p) {
    const args = {
      x: rt.ptr("x", p.x),
      weight: rt.ptr("weight", p.weight),
      wHalf: p.weight.dtype === "f16", // widened exactly while packing
      bias: rt.ptr("bias", p.bias),
      out: rt.ptr("out", p.out),
      rows: p.rows,
      inF: p.inFeatures,
      outF: p.outFeatures,
    };
    const per = rt.ex.matmulScratchBytes(p.outFeatures, p.inFeatures);
    return rt.run([{ kernel: "linear", args }], p.rows * p.inFeatures * p.outFeatures * NS_PER_MAC, (nt) => nt * per);
  },

  webgpu(rt, p) {
    const op = "linear";
    gemmWebGPU(rt, op, {
      a: rt.own(op, "x", p.x),
      b: rt.own(op, "weight", p.weight),
      bias: p.bias ? rt.own(op, "bias", p.bias) : null,
      out: rt.own(op, "out", p.out),
      batch: 1,
      M: p.rows,
      N: p.outFeatures,
      K: p.inFeatures,
      transB: true,
      alpha: 1,
    });
  },
});
