import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_TRANSCENDENTAL } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { defineKernel, type KernelDef, NEG } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface SoftmaxArgs {
  x: DeviceBuffer; // [rows, cols], softmax along cols
  out: DeviceBuffer; // may alias x
  rows: number;
  cols: number;
}

/** Row-wise softmax in f32; out may alias x. */
export const softmax = defineOp<SoftmaxArgs>({
  name: "softmax",

  validate(r, p) {
    r.positive({ rows: p.rows, cols: p.cols });
    r.fits("x", p.x, p.rows * p.cols);
    r.fits("out", p.out, p.rows * p.cols);
  },

  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out);
    const e = new Float64Array(p.cols);
    for (let r = 0; r < p.rows; r++) {
      const o = r * p.cols;
      let max = -Infinity;
      for (let j = 0; j < p.cols; j++) max = Math.max(max, x[o + j]);
      let sum = 0;
      for (let j = 0; j < p.cols; j++) sum += e[j] = Math.exp(x[o + j] - max);
      for (let j = 0; j < p.cols; j++) out[o + j] = e[j] / sum;
    }
  },

  wasm(rt, p) {
    const n = p.rows * p.cols;
    return rt.run(
      [{ kernel: "softmax", args: { x: rt.ptr("x", p.x), out: rt.ptr("out", p.out), rows: p.rows, cols: p.cols } }],
      n * NS_PER_TRANSCENDENTAL,
    );
  },

  webgpu(rt, p) {
    const op = "softmax";
    const { rows, cols } = p;
    const x = rt.own(op, "x", p.x),
      out = rt.own(op, "out", p.out);
    const [size] = planChunks(
      op,
      [rows],
      [
        { what: "x/out rows", size: (s) => s[0] * cols, limit: rt.cap(rt.eb) },
        { what: "workgroups", size: (s) => s[0], limit: rt.maxGroups },
      ],
    );
    for (const {
      start: [r0],
      count: [rc],
    } of chunks([rows], [size])) {
      const r = { lo: r0 * cols, hi: (r0 + rc) * cols };
      rt.run(
        softmaxKernel(),
        [
          { buf: x, ...r },
          { buf: out, ...r },
        ],
        { r0, rc, cols },
        rc,
      );
    }
  },

  warmup: () => [{ def: softmaxKernel() }],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/** Row softmax, one workgroup per row: an online (max, sum) per thread, merged by a tree, then one write pass. */
const softmaxKernel = (): KernelDef =>
  defineKernel("softmax", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["r0", "u32"],
      ["rc", "u32"],
      ["cols", "u32"],
    ],
    body: `var<workgroup> red_m: array<f32, 256>;
var<workgroup> red_s: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.rc) { return; }
  let base = (P.r0 + wg) * P.cols;
  var m = ${NEG};
  var s = 0.0;
  for (var j = li; j < P.cols; j += 256u) {
    let v = ld_x(base + j);
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  red_m[li] = m;
  red_s[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) {
      let m2 = red_m[li + w];
      let mm = max(m, m2);
      s = s * exp(m - mm) + red_s[li + w] * exp(m2 - mm);
      m = mm;
      red_m[li] = m;
      red_s[li] = s;
    }
    workgroupBarrier();
  }
  let mx = red_m[0];
  let inv = 1.0 / red_s[0];
  for (var j = li; j < P.cols; j += 256u) { st_out(base + j, exp(ld_x(base + j) - mx) * inv); }
}
`,
  }));
