import type { Activation, DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_ELEMENT, NS_PER_TRANSCENDENTAL } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { activationFn, defineKernel, ELEMENTWISE_HEAD, type KernelDef } from "../backends/webgpu/shaders.js";
import { activate } from "./activate.js";
import { activationCode, isCheapActivation } from "./contract.js";
import { defineOp } from "./op.js";

export interface GroupNormArgs {
  x: DeviceBuffer; // [batch, channels, spatial]
  gamma: DeviceBuffer; // [channels]
  beta: DeviceBuffer; // [channels]
  out: DeviceBuffer; // same shape as x; may alias x
  batch: number;
  channels: number;
  spatial: number; // H*W
  groups: number; // divides channels
  eps: number;
  /** Applied after the affine transform (GroupNorm then activation, fused). */
  activation: Activation;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);
/** WebGPU: group-norm reduction slice per workgroup. */
const GN_SLICE = 4096;

/** out = activation((x - mean) / sqrt(var + eps) * gamma + beta) per (batch, group); out may alias x. */
export const groupNorm = defineOp<GroupNormArgs>({
  name: "groupNorm",

  validate(r, p) {
    r.positive({ batch: p.batch, channels: p.channels, spatial: p.spatial, groups: p.groups });
    if (p.channels % p.groups !== 0) r.fail(`groups (${p.groups}) must divide channels (${p.channels})`);
    if (!(typeof p.eps === "number" && p.eps >= 0 && Number.isFinite(p.eps)))
      r.fail(`eps must be a non-negative number, got ${String(p.eps)}`);
    r.activation(p.activation);
    r.noAlias(p.out, { gamma: p.gamma, beta: p.beta });
    const n = p.batch * p.channels * p.spatial;
    r.fits("x", p.x, n);
    r.fits("gamma", p.gamma, p.channels);
    r.fits("beta", p.beta, p.channels);
    r.fits("out", p.out, n);
  },

  reference(rt, p) {
    const x = rt.data(p.x),
      g = rt.data(p.gamma),
      b = rt.data(p.beta),
      out = rt.data(p.out);
    const cpg = p.channels / p.groups,
      span = cpg * p.spatial;
    for (let n = 0; n < p.batch; n++) {
      for (let grp = 0; grp < p.groups; grp++) {
        const base = (n * p.channels + grp * cpg) * p.spatial;
        let sum = 0;
        for (let i = 0; i < span; i++) sum += x[base + i];
        const mean = sum / span;
        let sq = 0;
        for (let i = 0; i < span; i++) sq += (x[base + i] - mean) ** 2;
        const inv = 1 / Math.sqrt(sq / span + p.eps);
        for (let c = 0; c < cpg; c++) {
          const ch = grp * cpg + c;
          for (let s = 0; s < p.spatial; s++) {
            const i = base + c * p.spatial + s;
            out[i] = activate((x[i] - mean) * inv * g[ch] + b[ch], p.activation);
          }
        }
      }
    }
  },

  wasm(rt, p) {
    const n = p.batch * p.channels * p.spatial;
    const args = {
      x: rt.ptr("x", p.x),
      gamma: rt.ptr("gamma", p.gamma),
      beta: rt.ptr("beta", p.beta),
      out: rt.ptr("out", p.out),
      batch: p.batch,
      channels: p.channels,
      spatial: p.spatial,
      groups: p.groups,
      eps: p.eps,
      act: activationCode(p.activation),
    };
    return rt.run(
      [{ kernel: "groupNorm", args }],
      n * (isCheapActivation(p.activation) ? 2 * NS_PER_ELEMENT : NS_PER_TRANSCENDENTAL),
    );
  },

  webgpu(rt, p) {
    const op = "groupNorm";
    const { batch: N, channels: C, spatial: S, groups: G } = p;
    const x = rt.own(op, "x", p.x),
      gamma = rt.own(op, "gamma", p.gamma),
      beta = rt.own(op, "beta", p.beta);
    const out = rt.own(op, "out", p.out);
    const cpg = C / G,
      span = cpg * S,
      NG = N * G;
    const slice = Math.min(span, GN_SLICE, rt.cap(x.eb));
    const parts = cdiv(span, slice);
    const part = rt.allocRaw(NG * parts * 3, 4);
    const stat = rt.allocRaw(NG * 2, 4);
    const cap4 = rt.cap(4);

    // 1. per-slice (count, mean, M2)
    const total = NG * parts;
    const [ss] = planChunks(
      op,
      [total],
      [
        { what: "x", size: (s) => s[0] * slice, limit: rt.cap(x.eb) },
        { what: "partials", size: (s) => s[0] * 3, limit: cap4 },
        { what: "workgroups", size: (s) => s[0], limit: rt.maxGroups },
      ],
    );
    const sliceLo = (s: number): number => Math.floor(s / parts) * span + (s % parts) * slice;
    const sliceHi = (s: number): number => Math.floor(s / parts) * span + Math.min(span, ((s % parts) + 1) * slice);
    for (const {
      start: [s0],
      count: [sc],
    } of chunks([total], [ss])) {
      rt.run(
        groupNormStatsKernel(),
        [
          { buf: x, lo: sliceLo(s0), hi: sliceHi(s0 + sc - 1) },
          { buf: part, lo: s0 * 3, hi: (s0 + sc) * 3 },
        ],
        { s0, sc, span, slice, parts },
        sc,
      );
    }
    // 2. per-group mean and 1/std
    const [gs] = planChunks(
      op,
      [NG],
      [
        { what: "partials", size: (s) => s[0] * parts * 3, limit: cap4 },
        { what: "workgroups", size: (s) => cdiv(s[0], 64), limit: rt.maxGroups },
      ],
    );
    for (const {
      start: [g0],
      count: [gc],
    } of chunks([NG], [gs])) {
      rt.run(
        groupNormFinalKernel(),
        [
          { buf: part, lo: g0 * parts * 3, hi: (g0 + gc) * parts * 3 },
          { buf: stat, lo: g0 * 2, hi: (g0 + gc) * 2 },
        ],
        { g0, gc, parts, eps: p.eps },
        cdiv(gc, 64),
      );
    }
    // 3. normalise + affine + activation
    const gIndex = (e: number): number => Math.floor(e / (C * S)) * G + Math.floor((Math.floor(e / S) % C) / cpg);
    rt.elementwise(
      op,
      N * C * S,
      [x.eb, out.eb],
      (start, count) => {
        const end = start + count;
        const n0 = Math.floor(start / (C * S)),
          n1 = Math.floor((end - 1) / (C * S));
        const ch =
          n0 === n1 ? { lo: Math.floor(start / S) % C, hi: (Math.floor((end - 1) / S) % C) + 1 } : { lo: 0, hi: C };
        const r = { lo: start, hi: end };
        rt.run(
          groupNormApplyKernel(p.activation),
          [
            { buf: x, ...r },
            { buf: gamma, ...ch },
            { buf: beta, ...ch },
            { buf: stat, lo: gIndex(start) * 2, hi: gIndex(end - 1) * 2 + 2 },
            { buf: out, ...r },
          ],
          { start, count, spatial: S, channels: C, cpg, groups: G },
          cdiv(count, 256),
        );
      },
      [
        { what: "statistics", size: (s) => (cdiv(s[0], span) + 1) * 2, limit: cap4 },
        { what: "gamma/beta", size: (s) => Math.min(C, cdiv(s[0], S) + 1), limit: rt.cap(gamma.eb) },
      ],
    );
    rt.freeRaw(part);
    rt.freeRaw(stat);
  },

  warmup: (acts) => [
    { def: groupNormStatsKernel() },
    { def: groupNormFinalKernel() },
    ...acts.flatMap((a) => [
      { def: groupNormApplyKernel(a) },
      { def: groupNormApplyKernel(a), roots: [0, 1, 2, 3, 0] },
    ]),
  ],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/** Chan's merge of two (count, mean, M2) triples; used by both group-norm reductions. */
const CHAN = `fn chan(a: vec3f, b: vec3f) -> vec3f {
  let n = a.x + b.x;
  if (b.x == 0.0) { return a; }
  if (a.x == 0.0) { return b; }
  let d = b.y - a.y;
  return vec3f(n, a.y + d * (b.x / n), a.z + b.z + d * d * (a.x * b.x / n));
}
`;

/**
 * Group-norm statistics, stage 1: each workgroup reduces one slice of one group (Welford per thread,
 * Chan's merge across threads) into part[slice] = (count, mean, M2). Slicing spreads big groups over
 * many workgroups and keeps every binding small.
 */
const groupNormStatsKernel = (): KernelDef =>
  defineKernel("gn_stats", () => ({
    bindings: [{ name: "x" }, { name: "part", write: true, f32: true }],
    params: [
      ["s0", "u32"],
      ["sc", "u32"],
      ["span", "u32"],
      ["slice", "u32"],
      ["parts", "u32"],
    ],
    body: `var<workgroup> red: array<vec3f, 256>;
${CHAN}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.sc) { return; }
  let s = P.s0 + wg;
  let g = s / P.parts;
  let p = s % P.parts;
  let begin = g * P.span + p * P.slice;
  let end = g * P.span + min(P.span, (p + 1u) * P.slice);
  var acc = vec3f(0.0);
  for (var i = begin + li; i < end; i += 256u) {
    let v = ld_x(i);
    acc.x += 1.0;
    let d = v - acc.y;
    acc.y += d / acc.x;
    acc.z += d * (v - acc.y);
  }
  red[li] = acc;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { acc = chan(acc, red[li + w]); red[li] = acc; }
    workgroupBarrier();
  }
  if (li == 0u) { st_part(s * 3u, acc.x); st_part(s * 3u + 1u, acc.y); st_part(s * 3u + 2u, acc.z); }
}
`,
  }));

/** Group-norm statistics, stage 2: merge each group's slices into stat[g] = (mean, 1/sqrt(var + eps)). */
const groupNormFinalKernel = (): KernelDef =>
  defineKernel("gn_final", () => ({
    bindings: [
      { name: "part", f32: true },
      { name: "stat", write: true, f32: true },
    ],
    params: [
      ["g0", "u32"],
      ["gc", "u32"],
      ["parts", "u32"],
      ["eps", "f32"],
    ],
    body: `${CHAN}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = flat_wg(wid, nwg) * 64u + li;
  if (i >= P.gc) { return; }
  let g = P.g0 + i;
  var acc = vec3f(0.0);
  for (var p = 0u; p < P.parts; p++) {
    let j = (g * P.parts + p) * 3u;
    acc = chan(acc, vec3f(ld_part(j), ld_part(j + 1u), ld_part(j + 2u)));
  }
  st_stat(g * 2u, acc.y);
  st_stat(g * 2u + 1u, 1.0 / sqrt(acc.z / acc.x + P.eps));
}
`,
  }));

/** Group-norm stage 3, elementwise: normalise, affine, fused activation. */
const groupNormApplyKernel = (a: Activation): KernelDef =>
  defineKernel(`gn_apply_${a}`, () => ({
    bindings: [
      { name: "x" },
      { name: "gamma" },
      { name: "beta" },
      { name: "stat", f32: true },
      { name: "out", write: true },
    ],
    params: [
      ["start", "u32"],
      ["count", "u32"],
      ["spatial", "u32"],
      ["channels", "u32"],
      ["cpg", "u32"],
      ["groups", "u32"],
    ],
    body:
      activationFn(a) +
      ELEMENTWISE_HEAD +
      `  let plane = e / P.spatial;
  let ch = plane % P.channels;
  let g = (plane / P.channels) * P.groups + ch / P.cpg;
  st_out(e, act((ld_x(e) - ld_stat(g * 2u)) * ld_stat(g * 2u + 1u) * ld_gamma(ch) + ld_beta(ch)));
}
`,
  }));
