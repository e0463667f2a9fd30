import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_MAC } from "../backends/wasm/runtime.js";
import type { GpuBuffer } from "../backends/webgpu/buffers.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import type { WebGPURuntime } from "../backends/webgpu/runtime.js";
import { defineKernel, type KernelDef, tileOuterProducts } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface MatmulArgs {
  a: DeviceBuffer; // [batch, m, k]
  b: DeviceBuffer; // [batch, k, n], or [batch, n, k] when transposeB
  out: DeviceBuffer; // [batch, m, n]; out = alpha * a @ b
  batch: number;
  m: number;
  n: number;
  k: number;
  transposeB: boolean;
  alpha: number;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** out = alpha * a @ b (b transposed when transposeB), batched. */
export const matmul = defineOp<MatmulArgs>({
  name: "matmul",

  validate(r, p) {
    r.positive({ batch: p.batch, m: p.m, n: p.n, k: p.k });
    r.finite("alpha", p.alpha);
    r.noAlias(p.out, { a: p.a, b: p.b });
    r.fits("a", p.a, p.batch * p.m * p.k);
    r.fits("b", p.b, p.batch * p.k * p.n);
    r.fits("out", p.out, p.batch * p.m * p.n);
  },

  reference(rt, p) {
    const a = rt.data(p.a),
      b = rt.data(p.b),
      out = rt.data(p.out);
    const { m, n, k } = p;
    for (let bt = 0; bt < p.batch; bt++) {
      const ao = bt * m * k,
        bo = bt * k * n,
        oo = bt * m * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let t = 0; t < k; t++) acc += a[ao + i * k + t] * (p.transposeB ? b[bo + j * k + t] : b[bo + t * n + j]);
          out[oo + i * n + j] = p.alpha * acc;
        }
      }
    }
  },

  wasm(rt, p) {
    const args = {
      a: rt.ptr("a", p.a),
      b: rt.ptr("b", p.b),
      out: rt.ptr("out", p.out),
      batch: p.batch,
      m: p.m,
      n: p.n,
      k: p.k,
      transposeB: !!p.transposeB,
      alpha: p.alpha,
    };
    const per = rt.ex.matmulScratchBytes(p.n, p.k);
    return rt.run([{ kernel: "matmul", args }], p.batch * p.m * p.n * p.k * NS_PER_MAC, (nt) => nt * per);
  },

  webgpu(rt, p) {
    const op = "matmul";
    gemmWebGPU(rt, op, {
      a: rt.own(op, "a", p.a),
      b: rt.own(op, "b", p.b),
      bias: null,
      out: rt.own(op, "out", p.out),
      batch: p.batch,
      M: p.m,
      N: p.n,
      K: p.k,
      transB: !!p.transposeB,
      alpha: p.alpha,
    });
  },

  warmup: () => [{ def: gemmKernel(true) }, { def: gemmKernel(false) }],
});

/** The WGSL GEMM (64×64 tiles) over chunks that fit the device limits; linear and matmul both use it. */
export function gemmWebGPU(
  rt: WebGPURuntime,
  op: string,
  g: {
    a: GpuBuffer;
    b: GpuBuffer;
    bias: GpuBuffer | null;
    out: GpuBuffer;
    batch: number;
    M: number;
    N: number;
    K: number;
    transB: boolean;
    alpha: number;
  },
): void {
  const { a, b, bias, out, batch, M, N, K, transB, alpha } = g;
  const ext = [batch, M, N, K];
  const sizes = planChunks(op, ext, [
    { what: "a", size: (s) => ((s[0] - 1) * M + s[1] - 1) * K + s[3], limit: rt.cap(a.eb) },
    transB
      ? { what: "b", size: (s) => ((s[0] - 1) * N + s[2] - 1) * K + s[3], limit: rt.cap(b.eb) }
      : { what: "b", size: (s) => ((s[0] - 1) * K + s[3] - 1) * N + s[2], limit: rt.cap(b.eb) },
    { what: "out", size: (s) => ((s[0] - 1) * M + s[1] - 1) * N + s[2], limit: rt.cap(out.eb) },
    { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 64) * cdiv(s[2], 64), limit: rt.maxGroups },
  ]);
  for (const {
    start: [b0, m0, n0, k0],
    count: [bc, mc, nc, kc],
  } of chunks(ext, sizes)) {
    const bLast = b0 + bc - 1;
    const aR = { lo: (b0 * M + m0) * K + k0, hi: (bLast * M + m0 + mc - 1) * K + k0 + kc };
    const bR = transB
      ? { lo: (b0 * N + n0) * K + k0, hi: (bLast * N + n0 + nc - 1) * K + k0 + kc }
      : { lo: (b0 * K + k0) * N + n0, hi: (bLast * K + k0 + kc - 1) * N + n0 + nc };
    const tiles_m = cdiv(mc, 64),
      tiles_n = cdiv(nc, 64);
    // later reduction chunks accumulate onto out; the bias comes with the first
    const flags = (k0 > 0 ? 1 : 0) | (k0 === 0 && bias ? 2 : 0);
    rt.run(
      gemmKernel(transB, b.dtype === "f16"),
      [
        { buf: a, ...aR },
        { buf: b, ...bR },
        bias && k0 === 0 ? { buf: bias, lo: n0, hi: n0 + nc } : null,
        { buf: out, lo: (b0 * M + m0) * N + n0, hi: (bLast * M + m0 + mc - 1) * N + n0 + nc },
      ],
      { b0, bc, m0, mc, n0, nc, k0, kc, M, N, K, tiles_m, tiles_n, alpha, flags },
      bc * tiles_m * tiles_n,
    );
  }
}

// ---- WGSL ----------------------------------------------------------------------------------------

/**
 * Tiled GEMM shared by matmul and linear: a workgroup computes a 64x64 block of out[b] = alpha * a[b] @ B
 * (+ bias[n]) with 16x16 threads, each a 4x4 micro-tile (rows ty + 16i, cols tx + 16j) so that shared
 * reads and global writes are contiguous across threads. The K loop covers [k0, k0 + kc); chunks after the
 * first accumulate into out (flag 1), the first adds the bias (flag 2).
 */
const gemmKernel = (transB: boolean, bHalf = false): KernelDef =>
  defineKernel((transB ? "gemm_nt" : "gemm_nn") + (bHalf ? "_bh" : ""), () => ({
    // b may be f16 (linear's weight), unpacked in ld_b (shaders.ts)
    bindings: [{ name: "a" }, { name: "b", half: bHalf }, { name: "bias" }, { name: "out", write: true }],
    params: [
      ["b0", "u32"],
      ["bc", "u32"],
      ["m0", "u32"],
      ["mc", "u32"],
      ["n0", "u32"],
      ["nc", "u32"],
      ["k0", "u32"],
      ["kc", "u32"],
      ["M", "u32"],
      ["N", "u32"],
      ["K", "u32"],
      ["tiles_m", "u32"],
      ["tiles_n", "u32"],
      ["alpha", "f32"],
      ["flags", "u32"],
    ],
    body: `var<workgroup> as_: array<f32, 1024>;
var<workgroup> bs_: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_m * P.tiles_n;
  if (wg >= P.bc * per_b) { return; }
  let bt = P.b0 + wg / per_b;
  let t = wg % per_b;
  let m_base = (t / P.tiles_n) * 64u;
  let n_base = (t % P.tiles_n) * 64u;
  let k_end = P.k0 + P.kc;
  var acc: array<vec4f, 4>;
  for (var kt = P.k0; kt < k_end; kt += 16u) {
    for (var q = 0u; q < 4u; q++) {
      // a tile stored [kk][m]: this thread loads row li / 16 + 16q, column li % 16
      let mm = li / 16u + 16u * q;
      let kk = li % 16u;
      var v = 0.0;
      if (m_base + mm < P.mc && kt + kk < k_end) { v = ld_a((bt * P.M + P.m0 + m_base + mm) * P.K + kt + kk); }
      as_[kk * 64u + mm] = v;
${
  transB
    ? `      let nn = li / 16u + 16u * q;
      var u = 0.0;
      if (n_base + nn < P.nc && kt + kk < k_end) { u = ld_b((bt * P.N + P.n0 + n_base + nn) * P.K + kt + kk); }
      bs_[kk * 64u + nn] = u;`
    : `      let kb = li / 64u + 4u * q;
      let nn = li % 64u;
      var u = 0.0;
      if (n_base + nn < P.nc && kt + kb < k_end) { u = ld_b((bt * P.K + kt + kb) * P.N + P.n0 + n_base + nn); }
      bs_[kb * 64u + nn] = u;`
}
    }
    workgroupBarrier();
${tileOuterProducts("as_", "bs_")}
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m_base + lid.y + 16u * i;
    if (m >= P.mc) { continue; }
    let row = (bt * P.M + P.m0 + m) * P.N + P.n0;
    for (var j = 0u; j < 4u; j++) {
      let n = n_base + lid.x + 16u * j;
      if (n >= P.nc) { continue; }
      var v = P.alpha * acc[i][j];
      if ((P.flags & 2u) != 0u) { v += ld_bias(P.n0 + n); }
      if ((P.flags & 1u) != 0u) { v += ld_out(row + n); }
      st_out(row + n, v);
    }
  }
}
`,
  }));
