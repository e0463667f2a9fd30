import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_MAC } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { defineKernel, type KernelDef, NEG } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface AttentionArgs {
  q: DeviceBuffer; // [batch, queries, dim]
  k: DeviceBuffer; // [batch, keys, dim]
  v: DeviceBuffer; // [batch, keys, dim]
  out: DeviceBuffer; // [batch, queries, dim] = softmax(scale * q k^T) v, softmax in f32
  batch: number;
  queries: number;
  keys: number;
  dim: number;
  scale: number;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** out = softmax(scale · q kᵀ) v per batch, softmax in f32 (blocked online softmax on wasm and WebGPU). */
export const attention = defineOp<AttentionArgs>({
  name: "attention",

  validate(r, p) {
    r.positive({ batch: p.batch, queries: p.queries, keys: p.keys, dim: p.dim });
    r.finite("scale", p.scale);
    r.noAlias(p.out, { q: p.q, k: p.k, v: p.v });
    r.fits("q", p.q, p.batch * p.queries * p.dim);
    r.fits("k", p.k, p.batch * p.keys * p.dim);
    r.fits("v", p.v, p.batch * p.keys * p.dim);
    r.fits("out", p.out, p.batch * p.queries * p.dim);
  },

  reference(rt, p) {
    const q = rt.data(p.q),
      k = rt.data(p.k),
      v = rt.data(p.v),
      out = rt.data(p.out);
    const { queries: NQ, keys: NK, dim: D } = p;
    const s = new Float64Array(NK);
    for (let bt = 0; bt < p.batch; bt++) {
      const qo = bt * NQ * D,
        ko = bt * NK * D;
      for (let i = 0; i < NQ; i++) {
        let max = -Infinity;
        for (let j = 0; j < NK; j++) {
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[qo + i * D + c] * k[ko + j * D + c];
          s[j] = acc * p.scale;
          if (s[j] > max) max = s[j];
        }
        let sum = 0;
        for (let j = 0; j < NK; j++) sum += s[j] = Math.exp(s[j] - max);
        for (let c = 0; c < D; c++) {
          let acc = 0;
          for (let j = 0; j < NK; j++) acc += s[j] * v[ko + j * D + c];
          out[qo + i * D + c] = acc / sum;
        }
      }
    }
  },

  wasm(rt, p) {
    const args = {
      q: rt.ptr("q", p.q),
      k: rt.ptr("k", p.k),
      v: rt.ptr("v", p.v),
      out: rt.ptr("out", p.out),
      batch: p.batch,
      NQ: p.queries,
      NK: p.keys,
      D: p.dim,
      scale: p.scale,
    };
    const per = rt.ex.attentionScratchBytes(p.dim);
    // a 16-byte work counter (zeroed by scratchPtr), then one block per thread
    return rt.run(
      [{ kernel: "attention", args }],
      2 * p.batch * p.queries * p.keys * p.dim * NS_PER_MAC,
      (nt) => 16 + nt * per,
    );
  },

  webgpu(rt, p) {
    const op = "attention";
    const { batch: B, queries: NQ, keys: NK, dim: D } = p;
    const q = rt.own(op, "q", p.q),
      k = rt.own(op, "k", p.k),
      v = rt.own(op, "v", p.v),
      out = rt.own(op, "out", p.out);
    const ext = [B, NQ, NK];
    const sizes = planChunks(op, ext, [
      { what: "q/out", size: (s) => ((s[0] - 1) * NQ + s[1]) * D, limit: rt.cap(rt.eb) },
      { what: "k/v", size: (s) => ((s[0] - 1) * NK + s[2]) * D, limit: rt.cap(rt.eb) },
      { what: "row statistics", size: (s) => ((s[0] - 1) * NQ + s[1]) * 2, limit: rt.cap(4) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 16), limit: rt.maxGroups },
    ]);
    // Running max/sum per query row only need to survive between dispatches when keys are split.
    const ml = sizes[2] < NK ? rt.allocRaw(B * NQ * 2, 4) : null;
    for (const {
      start: [b0, q0, k0],
      count: [bc, qc, kc],
    } of chunks(ext, sizes)) {
      const qr = { lo: (b0 * NQ + q0) * D, hi: ((b0 + bc - 1) * NQ + q0 + qc) * D };
      const kr = { lo: (b0 * NK + k0) * D, hi: ((b0 + bc - 1) * NK + k0 + kc) * D };
      const tiles_q = cdiv(qc, 16);
      const flags = (k0 === 0 ? 1 : 0) | (k0 + kc === NK ? 2 : 0);
      rt.run(
        attentionKernel(),
        [
          { buf: q, ...qr },
          { buf: k, ...kr },
          { buf: v, ...kr },
          { buf: out, ...qr },
          ml ? { buf: ml, lo: (b0 * NQ + q0) * 2, hi: ((b0 + bc - 1) * NQ + q0 + qc) * 2 } : null,
        ],
        { b0, bc, q0, qc, k0, kc, NQ, NK, D, tiles_q, scale: p.scale, flags },
        bc * tiles_q,
      );
    }
    if (ml) rt.freeRaw(ml);
  },

  warmup: () => [{ def: attentionKernel() }],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/**
 * Flash-style attention: a workgroup owns 16 query rows and streams the keys [k0, k0+kc) in tiles of 64,
 * keeping a running max m and sum l per row (online softmax), so no score matrix beyond 16x64 ever exists.
 * The unnormalised output accumulates in `out` itself (each (row, d) is owned by one thread), which keeps
 * the head dimension unbounded. When keys are split over several dispatches, m and l persist in `ml`
 * between them. Flags: 1 first key chunk, 2 last key chunk (divide by l).
 */
const attentionKernel = (): KernelDef =>
  defineKernel("attention", () => ({
    bindings: [
      { name: "q" },
      { name: "k" },
      { name: "v" },
      { name: "out", write: true },
      { name: "ml", write: true, f32: true },
    ],
    params: [
      ["b0", "u32"],
      ["bc", "u32"],
      ["q0", "u32"],
      ["qc", "u32"],
      ["k0", "u32"],
      ["kc", "u32"],
      ["NQ", "u32"],
      ["NK", "u32"],
      ["D", "u32"],
      ["tiles_q", "u32"],
      ["scale", "f32"],
      ["flags", "u32"],
    ],
    body: `var<workgroup> qs: array<f32, 256>;
var<workgroup> ks: array<f32, 1024>;
var<workgroup> ss: array<f32, 1024>;
var<workgroup> m_s: array<f32, 16>;
var<workgroup> l_s: array<f32, 16>;
var<workgroup> c_s: array<f32, 16>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  if (wg >= P.bc * P.tiles_q) { return; }
  let bt = P.b0 + wg / P.tiles_q;
  let q_first = P.q0 + (wg % P.tiles_q) * 16u;
  let q_end = P.q0 + P.qc;
  let k_end = P.k0 + P.kc;
  let is_first = (P.flags & 1u) != 0u;
  let is_last = (P.flags & 2u) != 0u;
  let row = li / 16u;
  let lane = li % 16u;
  if (li < 16u) {
    var m = ${NEG};
    var l = 0.0;
    if (!is_first && q_first + li < q_end) {
      let j = (bt * P.NQ + q_first + li) * 2u;
      m = ld_ml(j);
      l = ld_ml(j + 1u);
    }
    m_s[li] = m;
    l_s[li] = l;
  }
  for (var kt = P.k0; kt < k_end; kt += 64u) {
    // scores for (row, keys lane + 16j)
    var s = vec4f(0.0);
    for (var d0 = 0u; d0 < P.D; d0 += 16u) {
      let d = d0 + lane;
      var qv = 0.0;
      if (q_first + row < q_end && d < P.D) { qv = ld_q((bt * P.NQ + q_first + row) * P.D + d); }
      qs[li] = qv;
      for (var q = 0u; q < 4u; q++) {
        let j = row + 16u * q;
        var kv = 0.0;
        if (kt + j < k_end && d < P.D) { kv = ld_k((bt * P.NK + kt + j) * P.D + d); }
        ks[j * 16u + lane] = kv;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < 16u; dd++) {
        s += qs[row * 16u + dd] * vec4f(ks[lane * 16u + dd], ks[(lane + 16u) * 16u + dd], ks[(lane + 32u) * 16u + dd], ks[(lane + 48u) * 16u + dd]);
      }
      workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
      let col = lane + 16u * j;
      ss[row * 64u + col] = select(${NEG}, s[j] * P.scale, kt + col < k_end);
    }
    workgroupBarrier();
    if (li < 16u) {
      let m_old = m_s[li];
      var mx = m_old;
      for (var j = 0u; j < 64u; j++) { mx = max(mx, ss[li * 64u + j]); }
      var sum = 0.0;
      for (var j = 0u; j < 64u; j++) {
        let p = select(0.0, exp(ss[li * 64u + j] - mx), kt + j < k_end);
        ss[li * 64u + j] = p;
        sum += p;
      }
      let c = exp(m_old - mx);
      l_s[li] = l_s[li] * c + sum;
      m_s[li] = mx;
      c_s[li] = c;
    }
    workgroupBarrier();
    let nk = min(64u, k_end - kt);
    let fresh = is_first && kt == P.k0;
    let finish = is_last && kt + 64u >= k_end;
    for (var d = li; d < P.D; d += 256u) {
      // Zeroed explicitly: some compilers hoist a loop-local array and skip its implicit zero-init per iteration.
      var acc: array<f32, 16>;
      for (var r = 0u; r < 16u; r++) { acc[r] = 0.0; }
      for (var j = 0u; j < nk; j++) {
        let vv = ld_v((bt * P.NK + kt + j) * P.D + d);
        for (var r = 0u; r < 16u; r++) { acc[r] += ss[r * 64u + j] * vv; }
      }
      for (var r = 0u; r < 16u; r++) {
        if (q_first + r >= q_end) { break; }
        let idx = (bt * P.NQ + q_first + r) * P.D + d;
        var o = acc[r];
        if (!fresh) { o += ld_out(idx) * c_s[r]; }
        if (finish) { o /= l_s[r]; }
        st_out(idx, o);
      }
    }
    workgroupBarrier();
  }
  if (!is_last && li < 16u && q_first + li < q_end) {
    let j = (bt * P.NQ + q_first + li) * 2u;
    st_ml(j, m_s[li]);
    st_ml(j + 1u, l_s[li]);
  }
}
`,
  }));
