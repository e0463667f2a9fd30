import type { DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_MAC, type WasmStep } from "../backends/wasm/runtime.js";
import { chunks, planChunks } from "../backends/webgpu/plan.js";
import { defineKernel, type KernelDef, tileOuterProducts } from "../backends/webgpu/shaders.js";
import { defineOp } from "./op.js";

export interface Conv2dArgs {
  x: DeviceBuffer; // [batch, inChannels, inHeight, inWidth]
  /** [outChannels, inChannels, kernelH, kernelW] (PyTorch layout); may be an f16 buffer (allocHalf). */
  weight: DeviceBuffer;
  bias: DeviceBuffer | null; // [outChannels]
  /** Added to the result after the bias (fused residual): same shape as out. */
  residual?: DeviceBuffer | null;
  out: DeviceBuffer; // [batch, outChannels, outHeight, outWidth]
  batch: number;
  inChannels: number;
  inHeight: number;
  inWidth: number;
  outChannels: number;
  kernelH: number;
  kernelW: number;
  stride: number;
  /** Zero padding per side; asymmetric padding expresses Downsample2D's (0, 1, 0, 1) pad. */
  padTop: number;
  padBottom: number;
  padLeft: number;
  padRight: number;
  outHeight: number; // = floor((inHeight' + padTop + padBottom - kernelH) / stride) + 1
  outWidth: number; // = floor((inWidth' + padLeft + padRight - kernelW) / stride) + 1
  /**
   * Convolve x upsampled ×2 by nearest neighbour (diffusers Upsample2D's interpolate, then its conv) without
   * forming the upsampled tensor: inHeight' = 2·inHeight, inWidth' = 2·inWidth in the sizes above, x keeps
   * its own. A 3×3 kernel at stride 1 and no residual only.
   */
  upsample?: boolean;
}

/** Bytes of transformed weights an upsampling conv's F(4×4) phases may hold at once: F(4×4)'s U of a plain
 * 512-channel layer (the SD VAE's largest), so fusing never raises the scratch past the plain layers'. */
export const PHASE_U_BYTES = 36 * 512 * 512 * 4;

/** How an upsampling F(4×4) conv runs: phases per pass (1, 2 or 4), or "staged" (see upsamplePhases). */
export type UpsamplePhases = 1 | 2 | 4 | "staged";

/**
 * "auto": 4 or 2 phase kernels a pass, as many as PHASE_U_BYTES allows, so that they share the input transform;
 * else "staged": the conv on the upsampled geometry, its input read upsampled while staging rows. Single-phase
 * passes would pack weights 4 times a call and run 4 calls' worth of steps: measured slower than staged
 * (512 channels, 32×32 input: 100 ms against 82 ms; 2.6× the per-tile overhead under exact tiling).
 */
export function upsamplePhases(choice: UpsamplePhases | "auto", C: number, O: number): UpsamplePhases {
  if (choice !== "auto") return choice;
  for (const np of [4, 2] as const) if (36 * np * O * C * 4 <= PHASE_U_BYTES) return np;
  return "staged";
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** Below this many channels Winograd's transforms cost more than the multiplies they save (measured). */
export const WINOGRAD_MIN_CHANNELS = 16;

/** Winograd output tile: 2 = F(2×2, 3×3), 4 = F(4×4, 3×3); "auto" picks per layer (see winogradTile). */
export type WinogradTile = 2 | 4 | "auto";

/** "auto" takes F(4×4, 3×3) from this many input and output channels, F(2×2, 3×3) below (see winogradTile). */
export const WINOGRAD4_MIN_CHANNELS = 128;

/**
 * The tile for a layer. F(4×4) does 4× fewer multiplies than direct convolution against F(2×2)'s 2.25×: it
 * took 0.59-0.74× F(2×2)'s time on every layer measured, 32 to 512 channels (bench/winograd.mjs, threads 1).
 * Its rounding error is larger: on one layer against float64, max 6.3e-6 at 512 channels (F(2×2) 3.5e-6,
 * direct 4.7e-6) and 7.9e-6 at 128 (2.6e-6, 2.9e-6). The fixture models (32 and 64 channels) amplify a layer's
 * error the most: F(4×4) on all their 3×3 layers takes the worst fixture error from 2.6e-5 to 3.9e-5 (plain
 * SIMD; relaxed 3.55e-5), past PyTorch fp32's own 3.6e-5, so "auto" keeps F(2×2) below
 * WINOGRAD4_MIN_CHANNELS; the SD VAEs' Winograd layers (128 to 512 channels) all get F(4×4).
 */
export function winogradTile(choice: WinogradTile, C: number, O: number): 2 | 4 {
  if (choice !== "auto") return choice;
  return Math.min(C, O) >= WINOGRAD4_MIN_CHANNELS ? 4 : 2;
}

/**
 * Output rows and columns a 3×3 stride-1 convolution computes in one piece on the wasm backend by default:
 * Winograd works in groups of 8 tiles along a row (F(4×4): 32 columns, F(2×2): 16) and in tile rows, so a
 * width just past a multiple wastes most of a group (68 columns cost as much as 96). Other convolutions: 1.
 * The exact tiler sizes its tiles with it. upsampled: the conv reads its input upsampled ×2; F(4×4)'s phases
 * tile the low-resolution input, so their grain doubles.
 */
export function convGrain(
  C: number,
  O: number,
  kernel: number,
  stride: number,
  upsampled = false,
): { rows: number; cols: number } {
  if (kernel !== 3 || stride !== 1 || Math.min(C, O) < WINOGRAD_MIN_CHANNELS) return { rows: 1, cols: 1 };
  const tile = winogradTile("auto", C, O);
  const g = upsampled && tile === 4 && upsamplePhases("auto", C, O) !== "staged" ? 2 * tile : tile;
  return { rows: g, cols: 8 * g };
}

export const conv2d = defineOp<Conv2dArgs>({
  name: "conv2d",

  validate(r, p) {
    const { batch, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: s } = p;
    r.positive({ batch, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: s });
    r.nonNegative({ padTop: p.padTop, padBottom: p.padBottom, padLeft: p.padLeft, padRight: p.padRight });
    const up = p.upsample ? 2 : 1;
    if (p.upsample && (KH !== 3 || KW !== 3 || s !== 1 || p.residual)) {
      r.fail(
        `upsample needs a 3x3 kernel at stride 1 and no residual; got ${KH}x${KW}, stride ${s}` +
          (p.residual ? " and a residual" : ""),
      );
    }
    const OH = Math.floor((up * H + p.padTop + p.padBottom - KH) / s) + 1;
    const OW = Math.floor((up * W + p.padLeft + p.padRight - KW) / s) + 1;
    if (p.outHeight !== OH || p.outWidth !== OW || OH < 1 || OW < 1) {
      r.fail(
        `output ${p.outHeight}x${p.outWidth} does not match input ${H}x${W}${p.upsample ? " upsampled x2" : ""}, ` +
          `kernel ${KH}x${KW}, stride ${s} and padding (${p.padTop}, ${p.padBottom}, ${p.padLeft}, ${p.padRight}): ` +
          `expected ${OH}x${OW}`,
      );
    }
    r.noAlias(p.out, { x: p.x, weight: p.weight, bias: p.bias, residual: p.residual });
    const outN = batch * O * OH * OW;
    r.fits("x", p.x, batch * C * H * W);
    r.fitsWeight("weight", p.weight, O * C * KH * KW);
    if (p.bias) r.fits("bias", p.bias, O);
    if (p.residual) r.fits("residual", p.residual, outN);
    r.fits("out", p.out, outN);
  },

  reference(rt, p) {
    const x = rt.data(p.x),
      w = rt.data(p.weight),
      out = rt.data(p.out);
    const bias = p.bias ? rt.data(p.bias) : null,
      res = p.residual ? rt.data(p.residual) : null;
    const {
      inChannels: C,
      inHeight: H,
      inWidth: W,
      outChannels: O,
      kernelH: KH,
      kernelW: KW,
      outHeight: OH,
      outWidth: OW,
    } = p;
    // an upsampled input is read through the index map (row >> 1, column >> 1)
    const sh = p.upsample ? 1 : 0;
    const VH = H << sh,
      VW = W << sh;
    for (let n = 0; n < p.batch; n++) {
      for (let o = 0; o < O; o++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            let acc = bias ? bias[o] : 0;
            for (let c = 0; c < C; c++) {
              for (let ky = 0; ky < KH; ky++) {
                const iy = oy * p.stride + ky - p.padTop;
                if (iy < 0 || iy >= VH) continue;
                for (let kx = 0; kx < KW; kx++) {
                  const ix = ox * p.stride + kx - p.padLeft;
                  if (ix < 0 || ix >= VW) continue;
                  acc += x[((n * C + c) * H + (iy >> sh)) * W + (ix >> sh)] * w[((o * C + c) * KH + ky) * KW + kx];
                }
              }
            }
            const i = ((n * O + o) * OH + oy) * OW + ox;
            out[i] = res ? acc + res[i] : acc;
          }
        }
      }
    }
  },

  wasm(rt, p) {
    const { batch, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: s } = p;
    const { outHeight: OH, outWidth: OW, padTop, padLeft } = p;
    const outN = batch * O * OH * OW;
    const w = rt.ptr("weight", p.weight),
      wHalf = p.weight.dtype === "f16"; // widened exactly while packing
    const x = rt.ptr("x", p.x),
      bias = rt.ptr("bias", p.bias),
      res = rt.ptr("residual", p.residual),
      out = rt.ptr("out", p.out);
    const ex = rt.ex;
    const pad1 = p.padTop === 1 && p.padBottom === 1 && p.padLeft === 1 && p.padRight === 1;
    const up = !!p.upsample;
    // the other kernels read an upsampled input while staging its rows: they see its size
    const VH = up ? 2 * H : H,
      VW = up ? 2 * W : W;
    if (KH === 3 && KW === 3 && s === 1 && pad1 && Math.min(C, O) >= rt.winogradMinChannels) {
      // transform the weights into the scratch (threads split output channels), then the tiled GEMMs
      if (winogradTile(rt.winogradTile, C, O) === 4) {
        // an upsampling conv: its phase kernels on the low-resolution input in passes of np phases, or staged
        const phases = up ? upsamplePhases(rt.upsamplePhases, C, O) : "staged";
        const np = phases === "staged" ? 0 : phases;
        // the geometry the kernel tiles: the input's for phases, the upsampled one's when staged
        const [TH, TW] = np > 0 ? [H, W] : [VH, VW];
        const steps: WasmStep[] = [];
        for (let p0 = 0; p0 < (np > 0 ? 4 : 1); p0 += Math.max(1, np)) {
          steps.push(
            { kernel: "winograd4Pack", args: { w, wHalf, O, C, W: TW, np, p0 } },
            { kernel: "winograd4", args: { x, bias, res, out, batch, C, H: TH, W: TW, O, up, np, p0 } },
          );
        }
        return rt.run(steps, (outN * C * 4 * NS_PER_MAC) / 2, (nt) =>
          ex.winograd4ScratchBytes(C, TH, TW, Math.max(1, np) * O, nt),
        );
      }
      return rt.run(
        [
          { kernel: "winogradPack", args: { w, wHalf, O, C, W: VW } },
          { kernel: "winograd", args: { x, bias, res, out, batch, C, H: VH, W: VW, O, up } },
        ],
        outN * C * 4 * NS_PER_MAC,
        (nt) => ex.winogradScratchBytes(C, VH, VW, O, nt),
      );
    }
    // two steps on one scratch: pack the weights (threads split output channels), then convolve
    const direct = { x, bias, res, out, batch, C, H: VH, W: VW, O, KH, KW, s, padTop, padLeft, OH, OW, up };
    return rt.run(
      [
        { kernel: "conv2dPack", args: { w, wHalf, O, C, KH, KW } },
        { kernel: "conv2d", args: direct },
      ],
      outN * C * KH * KW * NS_PER_MAC,
      (nt) => ex.conv2dScratchBytes(C, VH, VW, O, KH, KW, s, padTop, padLeft, OH, OW, nt),
    );
  },

  webgpu(rt, p) {
    const op = "conv2d";
    const { batch: N, inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, stride: S } = p;
    const { padTop: pt, padLeft: pl, outHeight: OH, outWidth: OW } = p;
    const x = rt.own(op, "x", p.x),
      w = rt.own(op, "weight", p.weight),
      out = rt.own(op, "out", p.out);
    const bias = p.bias ? rt.own(op, "bias", p.bias) : null;
    const res = p.residual ? rt.own(op, "residual", p.residual) : null;
    const KA = KH * KW;
    // an upsampled input: rows and columns of the upsampled tensor (VH × VW) are read at (y >> 1, x >> 1)
    const up = p.upsample ? 1 : 0;
    const VH = H << up;
    const inRows = (rc: number): number => {
      const v = Math.min(VH, (rc - 1) * S + KH);
      return up ? Math.min(H, Math.ceil(v / 2) + 1) : v;
    };
    const ext = [N, O, OH, C];
    const sizes = planChunks(op, ext, [
      { what: "x", size: (s) => ((s[0] - 1) * C + s[3] - 1) * H * W + inRows(s[2]) * W, limit: rt.cap(x.eb) },
      { what: "weight", size: (s) => ((s[1] - 1) * C + s[3]) * KA, limit: rt.cap(w.eb) },
      { what: "out", size: (s) => ((s[0] - 1) * O + s[1] - 1) * OH * OW + s[2] * OW, limit: rt.cap(out.eb) },
      { what: "workgroups", size: (s) => s[0] * cdiv(s[1], 64) * cdiv(s[2] * OW, 64), limit: rt.maxGroups },
    ]);
    for (const {
      start: [n0, o0, oy0, c0],
      count: [bc, oc, rc, cc],
    } of chunks(ext, sizes)) {
      const vLo = Math.min(Math.max(oy0 * S - pt, 0), VH - 1);
      const vHi = Math.max(Math.min((oy0 + rc - 1) * S - pt + KH, VH), vLo + 1);
      const iyLo = vLo >> up,
        iyHi = Math.min(H, (vHi + up) >> up);
      const outR = {
        lo: ((n0 * O + o0) * OH + oy0) * OW,
        hi: (((n0 + bc - 1) * O + o0 + oc - 1) * OH + oy0 + rc) * OW,
      };
      const lastC = c0 + cc === C;
      const tiles_p = cdiv(rc * OW, 64),
        tiles_o = cdiv(oc, 64);
      // later reduction chunks accumulate onto out; the bias comes with the first, the residual with the last
      const flags = (c0 > 0 ? 1 : 0) | (c0 === 0 && bias ? 2 : 0) | (lastC && res ? 4 : 0);
      rt.run(
        convKernel(KH, KW, w.dtype === "f16"),
        [
          { buf: x, lo: ((n0 * C + c0) * H + iyLo) * W, hi: ((n0 + bc - 1) * C + c0 + cc - 1) * H * W + iyHi * W },
          { buf: w, lo: (o0 * C + c0) * KA, hi: ((o0 + oc - 1) * C + c0 + cc) * KA },
          bias && c0 === 0 ? { buf: bias, lo: o0, hi: o0 + oc } : null,
          res && lastC ? { buf: res, ...outR } : null,
          { buf: out, ...outR },
        ],
        {
          n0,
          bc,
          o0,
          oc,
          oy0,
          rc,
          c0,
          cc,
          C,
          H,
          W,
          O,
          OH,
          OW,
          KH,
          KW,
          sy: S,
          pad_t: pt,
          pad_l: pl,
          tiles_p,
          tiles_o,
          flags,
          up,
        },
        bc * tiles_p * tiles_o,
      );
    }
  },

  warmup: () => [{ def: convKernel(3, 3) }, { def: convKernel(1, 1) }],
});

// ---- WGSL ----------------------------------------------------------------------------------------

/**
 * Direct convolution as an implicit GEMM (no im2col buffer): a workgroup computes 64 output channels x 64
 * output pixels of one image; the reduction runs over (input channel, ky, kx) in steps of 16, gathering the
 * input tile straight from x with zero padding. The chunk covers batch [n0, n0+bc), out channels
 * [o0, o0+oc), output rows [oy0, oy0+rc), input channels [c0, c0+cc). Flags: 1 accumulate into out
 * (later input-channel chunks, or residual == out), 2 add bias, 4 add residual. up = 1: x (H×W) is read
 * upsampled ×2 by nearest neighbour, never formed.
 */
const convKernel = (kh: number, kw: number, wHalf = false): KernelDef => {
  // 1x1 and 3x3 (every conv in the VAE) get the kernel size as constants, so the per-element index
  // divisions in the input gather become multiply-shifts.
  const fixed = (kh === 1 && kw === 1) || (kh === 3 && kw === 3);
  const sizeFns = fixed
    ? `fn k_h() -> u32 { return ${kh}u; }\nfn k_w() -> u32 { return ${kw}u; }\n`
    : "fn k_h() -> u32 { return P.KH; }\nfn k_w() -> u32 { return P.KW; }\n";
  const name = (fixed ? `conv2d_${kh}x${kw}` : "conv2d") + (wHalf ? "_wh" : "");
  return defineKernel(name, () => ({
    bindings: [
      { name: "x" },
      { name: "w", half: wHalf }, // f16 weights unpacked in ld_w (shaders.ts)
      { name: "bias" },
      { name: "res" },
      { name: "out", write: true },
    ],
    params: [
      ["n0", "u32"],
      ["bc", "u32"],
      ["o0", "u32"],
      ["oc", "u32"],
      ["oy0", "u32"],
      ["rc", "u32"],
      ["c0", "u32"],
      ["cc", "u32"],
      ["C", "u32"],
      ["H", "u32"],
      ["W", "u32"],
      ["O", "u32"],
      ["OH", "u32"],
      ["OW", "u32"],
      ["KH", "u32"],
      ["KW", "u32"],
      ["sy", "u32"],
      ["pad_t", "i32"],
      ["pad_l", "i32"],
      ["tiles_p", "u32"],
      ["tiles_o", "u32"],
      ["flags", "u32"],
      ["up", "u32"],
    ],
    body:
      sizeFns +
      `var<workgroup> ws: array<f32, 1024>;
var<workgroup> xs: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let wg = flat_wg(wid, nwg);
  let per_b = P.tiles_p * P.tiles_o;
  if (wg >= P.bc * per_b) { return; }
  let n = P.n0 + wg / per_b;
  let t = wg % per_b;
  let o_base = (t / P.tiles_p) * 64u;
  let p_base = (t % P.tiles_p) * 64u;
  let ka = k_h() * k_w();
  let kc = P.cc * ka;
  let npix = P.rc * P.OW;
  // The input-tile column (output pixel) and the weight-tile column (k offset) this thread loads never change.
  let xp = p_base + li % 64u;
  let xp_ok = xp < npix;
  let iy0 = i32((P.oy0 + xp / P.OW) * P.sy) - P.pad_t;
  let ix0 = i32((xp % P.OW) * P.sy) - P.pad_l;
  let plane = P.H * P.W;
  let x_base = (n * P.C + P.c0) * plane;
  let wk = li % 16u;
  var acc: array<vec4f, 4>;
  for (var k0 = 0u; k0 < kc; k0 += 16u) {
    for (var q = 0u; q < 4u; q++) {
      let ol = li / 16u + 16u * q;
      var v = 0.0;
      if (o_base + ol < P.oc && k0 + wk < kc) { v = ld_w(((P.o0 + o_base + ol) * P.C + P.c0) * ka + k0 + wk); }
      ws[wk * 64u + ol] = v;
      let kk = li / 64u + 4u * q;
      let k = k0 + kk;
      var u = 0.0;
      if (xp_ok && k < kc) {
        let c = k / ka;
        let kr = k % ka;
        let iy = iy0 + i32(kr / k_w());
        let ix = ix0 + i32(kr % k_w());
        if (iy >= 0 && iy < i32(P.H << P.up) && ix >= 0 && ix < i32(P.W << P.up)) {
          u = ld_x(x_base + c * plane + u32(iy >> P.up) * P.W + u32(ix >> P.up));
        }
      }
      xs[kk * 64u + li % 64u] = u;
    }
    workgroupBarrier();
${tileOuterProducts("ws", "xs")}
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let o = o_base + lid.y + 16u * i;
    if (o >= P.oc) { continue; }
    let ob = ((n * P.O + P.o0 + o) * P.OH + P.oy0) * P.OW;
    var bv = 0.0;
    if ((P.flags & 2u) != 0u) { bv = ld_bias(P.o0 + o); }
    for (var j = 0u; j < 4u; j++) {
      let p = p_base + lid.x + 16u * j;
      if (p >= npix) { continue; }
      var v = acc[i][j] + bv;
      if ((P.flags & 1u) != 0u) { v += ld_out(ob + p); }
      if ((P.flags & 4u) != 0u) { v += ld_res(ob + p); }
      st_out(ob + p, v);
    }
  }
}
`,
  }));
};
