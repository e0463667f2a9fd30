import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_ELEMENT } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { defineKernel, type KernelDef } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface CopyArgs {
  x: DeviceBuffer;
  out: DeviceBuffer; // must not alias x
  /** Copies `rows` rows of `cols` elements: out[outOffset + r*outRowStride + c] = x[xOffset + r*xRowStride + c]. */
  rows: number;
  cols: number;
  xOffset: number;
  xRowStride: number;
  outOffset: number;
  outRowStride: number;
}

export interface TransposeArgs {
  x: DeviceBuffer; // [batch, rows, cols]
  out: DeviceBuffer; // [batch, cols, rows]
  batch: number;
  rows: number;
  cols: number;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** out[b, c, r] = x[b, r, c]. */
export const transpose = defineOp<TransposeArgs>({
  name: "transpose",
  validate(r, p) {
    r.positive({ batch: p.batch, rows: p.rows, cols: p.cols });
    r.noAlias(p.out, { x: p.x });
    r.fits("x", p.x, p.batch * p.rows * p.cols);
    r.fits("out", p.out, p.batch * p.rows * p.cols);
  },
  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out);
    for (let bt = 0; bt < p.batch; bt++) {
      const o = bt * p.rows * p.cols;
      for (let r = 0; r < p.rows; r++) for (let c = 0; c < p.cols; c++) out[o + c * p.rows + r] = x[o + r * p.cols + c];
    }
  },
  wasm(rt, p) {
    const args = { x: rt.ptr("x", p.x), out: rt.ptr("out", p.out), batch: p.batch, rows: p.rows, cols: p.cols };
    return rt.run([{ kernel: "transpose", args }], p.batch * p.rows * p.cols * NS_PER_ELEMENT);
  },
  webgpu(rt, p) {
    const op = "transpose";
    const { batch: B, rows: R, cols: C } = p;
    const x = rt.own(op, "x", p.x),
      out = rt.own(op, "out", p.out);
    const ext = [B, R, C];
    const sizes = planChunks(op, ext, [
      { what: "x", size: (s) => ((s[0] - 1) * R + s[1] - 1) * C + s[2], limit: rt.cap(x.eb) },
      { what: "out", size: (s) => ((s[0] - 1) * C + s[2] - 1) * R + s[1], limit: rt.cap(out.eb) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 16) * cdiv(s[2], 16), limit: rt.maxGroups },
    ]);
    for (const {
      start: [b0, r0, c0],
      count: [bc, rc, cc],
    } of chunks(ext, sizes)) {
      const tiles_r = cdiv(rc, 16),
        tiles_c = cdiv(cc, 16);
      rt.run(
        transposeKernel(),
        [
          { buf: x, lo: (b0 * R + r0) * C + c0, hi: ((b0 + bc - 1) * R + r0 + rc - 1) * C + c0 + cc },
          { buf: out, lo: (b0 * C + c0) * R + r0, hi: ((b0 + bc - 1) * C + c0 + cc - 1) * R + r0 + rc },
        ],
        { b0, bc, r0, rc, c0, cc, rows: R, cols: C, tiles_r, tiles_c },
        bc * tiles_r * tiles_c,
      );
    }
  },
  warmup: () => [{ def: transposeKernel() }],
});

/** Strided 2-D copy: out[outOffset + r*outRowStride + c] = x[xOffset + r*xRowStride + c]; x must not be out. */
export const copy = defineOp<CopyArgs>({
  name: "copy",
  validate(r, p) {
    r.nonNegative({
      rows: p.rows,
      cols: p.cols,
      xOffset: p.xOffset,
      xRowStride: p.xRowStride,
      outOffset: p.outOffset,
      outRowStride: p.outRowStride,
    });
    r.noAlias(p.out, { x: p.x });
    if (p.rows === 0 || p.cols === 0) return;
    r.fits("x", p.x, p.xOffset + (p.rows - 1) * p.xRowStride + p.cols);
    r.fits("out", p.out, p.outOffset + (p.rows - 1) * p.outRowStride + p.cols);
  },
  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out);
    for (let r = 0; r < p.rows; r++) {
      for (let c = 0; c < p.cols; c++) out[p.outOffset + r * p.outRowStride + c] = x[p.xOffset + r * p.xRowStride + c];
    }
  },
  wasm(rt, p) {
    const x = rt.ptr("x", p.x),
      out = rt.ptr("out", p.out);
    if (p.rows === 0 || p.cols === 0) return;
    const args = {
      x: x + 4 * p.xOffset,
      out: out + 4 * p.outOffset,
      rows: p.rows,
      cols: p.cols,
      xStride: p.xRowStride,
      outStride: p.outRowStride,
    };
    return rt.run([{ kernel: "copy2d", args }], p.rows * p.cols * NS_PER_ELEMENT);
  },
  webgpu(rt, p) {
    const op = "copy";
    const { rows, cols, xOffset: xOff, xRowStride: xs, outOffset: oOff, outRowStride: os } = p;
    const x = rt.own(op, "x", p.x),
      out = rt.own(op, "out", p.out);
    if (rows === 0 || cols === 0) return;
    const sizes = planChunks(
      op,
      [rows, cols],
      [
        { what: "x", size: (s) => (s[0] - 1) * xs + s[1], limit: rt.cap(x.eb) },
        { what: "out", size: (s) => (s[0] - 1) * os + s[1], limit: rt.cap(out.eb) },
        { what: "workgroups", size: (s) => cdiv(s[0] * s[1], 256), limit: rt.maxGroups },
      ],
    );
    for (const {
      start: [r0, c0],
      count: [rc, cc],
    } of chunks([rows, cols], sizes)) {
      rt.run(
        copyKernel(),
        [
          { buf: x, lo: xOff + r0 * xs + c0, hi: xOff + (r0 + rc - 1) * xs + c0 + cc },
          { buf: out, lo: oOff + r0 * os + c0, hi: oOff + (r0 + rc - 1) * os + c0 + cc },
        ],
        { r0, rc, c0, cc, x_off: xOff, x_stride: xs, o_off: oOff, o_stride: os },
        cdiv(rc * cc, 256),
      );
    }
  },
  warmup: () => [{ def: copyKernel() }],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/** Strided 2-D copy of the block rows [r0, r0 + rc) x cols [c0, c0 + cc). */
const copyKernel = (): KernelDef =>
  defineKernel("copy", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["r0", "u32"],
      ["rc", "u32"],
      ["c0", "u32"],
      ["cc", "u32"],
      ["x_off", "u32"],
      ["x_stride", "u32"],
      ["o_off", "u32"],
      ["o_stride", "u32"],
    ],
    body: `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 256u + li;
  if (i >= P.rc * P.cc) { return; }
  let r = P.r0 + i / P.cc;
  let c = P.c0 + i % P.cc;
  st_out(P.o_off + r * P.o_stride + c, ld_x(P.x_off + r * P.x_stride + c));
}
`,
  }));

/** Batched transpose through a padded 16x16 shared tile so both the reads and the writes are coalesced. */
const transposeKernel = (): KernelDef =>
  defineKernel("transpose", () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["b0", "u32"],
      ["bc", "u32"],
      ["r0", "u32"],
      ["rc", "u32"],
      ["c0", "u32"],
      ["cc", "u32"],
      ["rows", "u32"],
      ["cols", "u32"],
      ["tiles_r", "u32"],
      ["tiles_c", "u32"],
    ],
    body: `var<workgroup> tile: array<f32, 272>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_r * P.tiles_c;
  if (wg >= P.bc * per_b) { return; }
  let base = (P.b0 + wg / per_b) * P.rows * P.cols;
  let t = wg % per_b;
  let tr = P.r0 + (t / P.tiles_c) * 16u;
  let tc = P.c0 + (t % P.tiles_c) * 16u;
  let r_end = P.r0 + P.rc;
  let c_end = P.c0 + P.cc;
  let r = tr + lid.y;
  let c = tc + lid.x;
  if (r < r_end && c < c_end) { tile[lid.y * 17u + lid.x] = ld_x(base + r * P.cols + c); }
  workgroupBarrier();
  let o_row = tc + lid.y;
  let o_col = tr + lid.x;
  if (o_row < c_end && o_col < r_end) { st_out(base + o_row * P.rows + o_col, tile[lid.x * 17u + lid.y]); }
}
`,
  }));
