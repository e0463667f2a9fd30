import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_ELEMENT } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { defineKernel, type KernelDef } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface Upsample2xArgs {
  x: DeviceBuffer; // [planes, height, width]
  out: DeviceBuffer; // [planes, 2*height, 2*width], nearest neighbour
  planes: number; // batch * channels
  height: number;
  width: number;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** Nearest-neighbour ×2 per plane: out[p, y, x] = x[p, y >> 1, x >> 1]. */
export const upsampleNearest2x = defineOp<Upsample2xArgs>({
  name: "upsampleNearest2x",
  validate(r, p) {
    r.positive({ planes: p.planes, height: p.height, width: p.width });
    r.noAlias(p.out, { x: p.x });
    const n = p.planes * p.height * p.width;
    r.fits("x", p.x, n);
    r.fits("out", p.out, 4 * n);
  },
  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out);
    const { height: H, width: W } = p;
    for (let pl = 0; pl < p.planes; pl++) {
      for (let y = 0; y < 2 * H; y++) {
        for (let xx = 0; xx < 2 * W; xx++) out[(pl * 2 * H + y) * 2 * W + xx] = x[(pl * H + (y >> 1)) * W + (xx >> 1)];
      }
    }
  },
  wasm(rt, p) {
    const args = { x: rt.ptr("x", p.x), out: rt.ptr("out", p.out), planes: p.planes, H: p.height, W: p.width };
    return rt.run([{ kernel: "upsampleNearest2x", args }], 4 * p.planes * p.height * p.width * NS_PER_ELEMENT);
  },
  webgpu(rt, p) {
    const op = "upsampleNearest2x";
    const rows = p.planes * p.height,
      w = p.width;
    const x = rt.own(op, "x", p.x),
      out = rt.own(op, "out", p.out);
    // Input rows are independent: flattened row r feeds output rows 2r and 2r + 1.
    const [size] = planChunks(
      op,
      [rows],
      [
        { what: "x", size: (s) => s[0] * w, limit: rt.cap(x.eb) },
        { what: "out", size: (s) => s[0] * 4 * w, limit: rt.cap(out.eb) },
        { what: "workgroups", size: (s) => cdiv(s[0] * 4 * w, 256), limit: rt.maxGroups },
      ],
    );
    for (const {
      start: [r0],
      count: [rc],
    } of chunks([rows], [size])) {
      rt.run(
        upsampleKernel(),
        [
          { buf: x, lo: r0 * w, hi: (r0 + rc) * w },
          { buf: out, lo: r0 * 4 * w, hi: (r0 + rc) * 4 * w },
        ],
        { r0, rc, w },
        cdiv(rc * 4 * w, 256),
      );
    }
  },

  warmup: () => [{ def: upsampleKernel() }],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/** Nearest 2x upsampling over flattened input rows [r0, r0 + rc) (row r of the input feeds output rows 2r, 2r+1). */
const upsampleKernel = (): KernelDef =>
  defineKernel("upsample2x", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["r0", "u32"],
      ["rc", "u32"],
      ["w", "u32"],
    ],
    body: `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  let w2 = 2u * P.w;
  if (i >= P.rc * 2u * w2) { return; }
  let r = P.r0 + (i / w2) / 2u;
  st_out(P.r0 * 2u * w2 + i, ld_x(r * P.w + (i % w2) / 2u));
}
`,
  }));
