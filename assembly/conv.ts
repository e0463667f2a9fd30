// 2-D convolution as an implicit GEMM; no im2col of the image is ever built.
//
// Input side: for one output row, the KH input rows its taps need are copied per input channel into the
// thread's scratch with their zero padding written out, and for stride s split into s phases (even / odd
// columns for s = 2). Every tap (c, ky, kx) of a block of output pixels is then a contiguous run of floats
// at a fixed byte offset from the block start: for KW = 3 the kernel walks the C·KH rows with taps at
// (0, off1, off2) in each; other kernel sizes walk a table of C·KH·KW offsets. 1×1 stride-1 unpadded
// convolutions read the input planes directly.
//
// Weight side: each thread packs the output channels it computes into [O/4][C·KH·KW][4] in its scratch
// once per call (cost ~1/(2·OH·OW) of the multiply-adds; no second copy of the model stays resident), so
// the micro-kernel reaches all weights through one pointer with immediate offsets.
//
// Micro-kernel: 4 output channels × NV vectors of 4 output pixels (12 accumulators for NV = 3). Per tap:
// NV unaligned input loads, 4 broadcast weight loads, 4·NV multiply-adds.
import { loadPartial, madd, sliceBegin, splat, storePartial } from "./common";

/** Floats in one phase of a scratch row: a pixel block may read up to 12 + (KW-1)/s floats past its start. */
// @ts-ignore: decorator
@inline function phaseLength(OW: i32, KW: i32, s: i32): i32 {
  return (OW + 12 + (KW - 1) / s + 3) & ~3;
}

// @ts-ignore: decorator
@inline function isDirect(KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, H: i32, W: i32, OH: i32, OW: i32): bool {
  return KH == 1 && KW == 1 && s == 1 && padTop == 0 && padLeft == 0 && OH == H && OW == W;
}

/**
 * Threads split output-channel blocks when there are enough of them (each thread then packs only its own
 * weights), output rows otherwise (small O: every thread packs all of them).
 */
// @ts-ignore: decorator
@inline function splitsChannels(O: i32, nt: i32): bool {
  return ((O + 3) >> 2) >= 2 * nt;
}

/** Scratch bytes one thread needs for conv2d; thread tid uses scratch + tid · this. */
export function conv2dScratchBytes(
  C: i32, H: i32, W: i32, O: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, OH: i32, OW: i32, nt: i32,
): i32 {
  const T = C * KH * KW;
  const O4 = (O + 3) >> 2;
  const blocks = splitsChannels(O, nt) ? (O4 + nt - 1) / nt : O4;
  let bytes = blocks * T * 16 + (((T + 3) & ~3) << 2);
  if (!isDirect(KH, KW, s, padTop, padLeft, H, W, OH, OW)) bytes += C * KH * s * (phaseLength(OW, KW, s) << 2);
  return bytes;
}

/** Packs output channels [4·ob0, 4·ob1) of PyTorch [O][T] weights into [ob][T][4], zero past O. */
function packWeights(w: usize, wp: usize, ob0: i32, ob1: i32, O: i32, T: i32): void {
  const row = <usize>T << 2;
  let p = wp;
  for (let ob = ob0; ob < ob1; ob++) {
    const o = ob << 2;
    const r0 = w + <usize>o * row;
    const r1 = o + 1 < O ? r0 + row : 0, r2 = o + 2 < O ? r0 + 2 * row : 0, r3 = o + 3 < O ? r0 + 3 * row : 0;
    for (let t = 0; t < T; t++) {
      const i = <usize>t << 2;
      store<f32>(p, load<f32>(r0 + i));
      store<f32>(p, r1 != 0 ? load<f32>(r1 + i) : 0, 4);
      store<f32>(p, r2 != 0 ? load<f32>(r2 + i) : 0, 8);
      store<f32>(p, r3 != 0 ? load<f32>(r3 + i) : 0, 12);
      p += 16;
    }
  }
}

/**
 * out[n][o][oy][ox] = bias[o] + Σ x[n][c][oy·s+ky-padTop][ox·s+kx-padLeft] · w[o][c][ky][kx] (+ residual).
 * w: PyTorch [O][C][KH][KW] weights. bias, res: 0 when absent. The bottom/right padding is implied by OH, OW.
 */
export function conv2d(
  x: usize, w: usize, bias: usize, res: usize, out: usize,
  batch: i32, C: i32, H: i32, W: i32, O: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32,
  OH: i32, OW: i32, scratch: usize, tid: i32, nt: i32,
): void {
  const T = C * KH * KW;
  const O4 = (O + 3) >> 2;
  const direct = isDirect(KH, KW, s, padTop, padLeft, H, W, OH, OW);
  const byChannels = splitsChannels(O, nt);
  const ob0 = byChannels ? sliceBegin(O4, tid, nt) : 0, ob1 = byChannels ? sliceBegin(O4, tid + 1, nt) : O4;
  if (ob0 >= ob1) return;
  const sb = scratch + <usize>tid * <usize>conv2dScratchBytes(C, H, W, O, KH, KW, s, padTop, padLeft, OH, OW, nt);
  const wp = sb;
  const tab = wp + (<usize>((ob1 - ob0) * T) << 4);
  const rows = tab + (<usize>((T + 3) & ~3) << 2);
  const outPlane = <usize>OH * <usize>OW << 2;
  const inPlane = <usize>H * <usize>W << 2;
  packWeights(w, wp, ob0, ob1, O, T);
  const oc0 = ob0 << 2, oc1 = min(ob1 << 2, O);
  const b = bias != 0 ? bias + (<usize>oc0 << 2) : 0;

  if (direct) {
    const HW = H * W;
    // whole 4-pixel vectors per thread so that threads never share an output vector
    const nv = (HW + 3) >> 2;
    const p0 = byChannels ? 0 : sliceBegin(nv, tid, nt) << 2;
    const p1 = byChannels ? HW : min(sliceBegin(nv, tid + 1, nt) << 2, HW);
    if (p0 >= p1) return;
    for (let n = 0; n < batch; n++) {
      const src = x + <usize>n * <usize>C * inPlane + (<usize>p0 << 2);
      const off = (<usize>n * <usize>O + <usize>oc0) * outPlane + (<usize>p0 << 2);
      convRow(src, tab, T, 1, C, inPlane, 0, 0, wp, out + off, res != 0 ? res + off : 0, outPlane, oc1 - oc0, p1 - p0, b);
    }
    return;
  }

  const PL = phaseLength(OW, KW, s);
  const rowBytes = <usize>(s * PL) << 2;
  if (KW != 3) {
    // tap table: byte offset of tap (c, ky, kx) from the block start inside the scratch rows
    for (let c = 0; c < C; c++) {
      for (let ky = 0; ky < KH; ky++) {
        for (let kx = 0; kx < KW; kx++) {
          const off = <usize>(c * KH + ky) * rowBytes + (<usize>((kx % s) * PL + kx / s) << 2);
          store<i32>(tab + (<usize>((c * KH + ky) * KW + kx) << 2), <i32>off);
        }
      }
    }
  }
  // KW == 3: taps kx = 1, 2 sit at these byte offsets from tap 0 (phase kx % s, index kx / s)
  const off1 = <usize>((1 % s) * PL + 1 / s) << 2, off2 = <usize>((2 % s) * PL + 2 / s) << 2;
  const total = batch * OH;
  const r0 = byChannels ? 0 : sliceBegin(total, tid, nt), r1 = byChannels ? total : sliceBegin(total, tid + 1, nt);
  for (let r = r0; r < r1; r++) {
    const n = r / OH, oy = r - n * OH;
    fillRows(x + <usize>n * <usize>C * inPlane, rows, rowBytes, C, H, W, KH, s, PL, oy * s - padTop, padLeft);
    const off = (<usize>n * <usize>O + <usize>oc0) * outPlane + (<usize>oy * <usize>OW << 2);
    convRow(rows, tab, T, KW, C * KH, rowBytes, off1, off2, wp, out + off, res != 0 ? res + off : 0, outPlane, oc1 - oc0, OW, b);
  }
}

/**
 * Copies input rows iy0 .. iy0+KH-1 of every channel into scratch rows (c·KH + ky), zero-padded, split
 * into s phases: phase ph, index j holds input column j·s + ph - padLeft.
 */
function fillRows(
  x: usize, rows: usize, rowBytes: usize, C: i32, H: i32, W: i32, KH: i32, s: i32, PL: i32, iy0: i32, padLeft: i32,
): void {
  const rowIn = <usize>W << 2;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < KH; ky++) {
      const dst = rows + <usize>(c * KH + ky) * rowBytes;
      const iy = iy0 + ky;
      if (iy < 0 || iy >= H) {
        memory.fill(dst, 0, rowBytes);
        continue;
      }
      const src = x + (<usize>c * <usize>H + <usize>iy) * rowIn;
      if (s == 1) {
        const lead = min(padLeft, PL);
        if (lead > 0) memory.fill(dst, 0, <usize>lead << 2);
        const n = min(W, PL - lead);
        memory.copy(dst + (<usize>lead << 2), src, <usize>n << 2);
        const used = lead + n;
        if (used < PL) memory.fill(dst + (<usize>used << 2), 0, <usize>(PL - used) << 2);
      } else {
        for (let ph = 0; ph < s; ph++) {
          const d = dst + (<usize>(ph * PL) << 2);
          for (let j = 0; j < PL; j++) {
            const ix = j * s + ph - padLeft;
            store<f32>(d + (<usize>j << 2), ix >= 0 && ix < W ? load<f32>(src + (<usize>ix << 2)) : <f32>0);
          }
        }
      }
    }
  }
}

/**
 * One row of npx output pixels for O output channels. src: where pixel 0's taps start; wp: packed weights
 * of these channels; dst/res: pixel 0 of the first channel; plane: bytes between output channels.
 * Block widths are chosen so that, where possible, no block is narrower than 8 pixels.
 */
function convRow(
  src: usize, tab: usize, T: i32, KW: i32, rows: i32, rowBytes: usize, off1: usize, off2: usize,
  wp: usize, dst: usize, res: usize, plane: usize, O: i32, npx: i32, bias: usize,
): void {
  const wBlock = <usize>T << 4;
  for (let ob = 0; ob < O; ob += 4) {
    const nOc = min(4, O - ob);
    const w = wp + <usize>(ob >> 2) * wBlock;
    const d = dst + <usize>ob * plane;
    const rs = res != 0 ? res + <usize>ob * plane : 0;
    const b = bias != 0 ? bias + (<usize>ob << 2) : 0;
    let p = 0;
    while (p < npx) {
      const left = npx - p;
      const o = <usize>p << 2;
      const rso = rs != 0 ? rs + o : 0;
      if ((left >= 12 && left != 16) || (left > 8 && left < 12)) {
        const n = min(12, left);
        if (KW == 3) convRows3x3(src + o, rows, rowBytes, off1, off2, w, d + o, rso, plane, nOc, n, b);
        else if (KW == 1) convRows3x1(src + o, rows, rowBytes, w, d + o, rso, plane, nOc, n, b);
        else convTab3(src + o, tab, T, w, d + o, rso, plane, nOc, n, b);
        p += 12;
      } else if (left > 4) {
        const n = min(8, left);
        if (KW == 3) convRows2x3(src + o, rows, rowBytes, off1, off2, w, d + o, rso, plane, nOc, n, b);
        else if (KW == 1) convRows2x1(src + o, rows, rowBytes, w, d + o, rso, plane, nOc, n, b);
        else convTab2(src + o, tab, T, w, d + o, rso, plane, nOc, n, b);
        p += 8;
      } else {
        if (KW == 3) convRows1x3(src + o, rows, rowBytes, off1, off2, w, d + o, rso, plane, nOc, left, b);
        else if (KW == 1) convRows1x1(src + o, rows, rowBytes, w, d + o, rso, plane, nOc, left, b);
        else convTab1(src + o, tab, T, w, d + o, rso, plane, nOc, left, b);
        p += 4;
      }
    }
  }
}

function convRows3x3(src: usize, rows: i32, rb: usize, off1: usize, off2: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(3, 3, src, rows, rb, off1, off2, w, dst, res, plane, nOc, npx, bias);
}
function convRows2x3(src: usize, rows: i32, rb: usize, off1: usize, off2: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(2, 3, src, rows, rb, off1, off2, w, dst, res, plane, nOc, npx, bias);
}
function convRows1x3(src: usize, rows: i32, rb: usize, off1: usize, off2: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(1, 3, src, rows, rb, off1, off2, w, dst, res, plane, nOc, npx, bias);
}
function convRows3x1(src: usize, rows: i32, rb: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(3, 1, src, rows, rb, 0, 0, w, dst, res, plane, nOc, npx, bias);
}
function convRows2x1(src: usize, rows: i32, rb: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(2, 1, src, rows, rb, 0, 0, w, dst, res, plane, nOc, npx, bias);
}
function convRows1x1(src: usize, rows: i32, rb: usize, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convRows(1, 1, src, rows, rb, 0, 0, w, dst, res, plane, nOc, npx, bias);
}
function convTab3(src: usize, tab: usize, T: i32, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convTab(3, src, tab, T, w, dst, res, plane, nOc, npx, bias);
}
function convTab2(src: usize, tab: usize, T: i32, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convTab(2, src, tab, T, w, dst, res, plane, nOc, npx, bias);
}
function convTab1(src: usize, tab: usize, T: i32, w: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize): void {
  convTab(1, src, tab, T, w, dst, res, plane, nOc, npx, bias);
}

// Tile bodies are @inline templates: NV (vectors of 4 pixels) and KW (taps per row) are compile-time
// constants at every call site, so unused accumulators and taps fold away. Output channels past nOc
// compute on zero weights and are not stored.

// @ts-ignore: decorator
@inline function convRows(
  NV: i32, KW: i32, src: usize, rows: i32, rb: usize, off1: usize, off2: usize, w: usize,
  dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize,
): void {
  const b0 = splat(bias != 0 ? load<f32>(bias) : 0);
  const b1 = splat(bias != 0 && nOc > 1 ? load<f32>(bias, 4) : 0);
  const b2 = splat(bias != 0 && nOc > 2 ? load<f32>(bias, 8) : 0);
  const b3 = splat(bias != 0 && nOc > 3 ? load<f32>(bias, 12) : 0);
  let c00 = b0, c01 = b0, c02 = b0;
  let c10 = b1, c11 = b1, c12 = b1;
  let c20 = b2, c21 = b2, c22 = b2;
  let c30 = b3, c31 = b3, c32 = b3;
  let p = src, pw = w;
  for (let r = 0; r < rows; r++) {
    {
      const x0 = v128.load(p);
      const x1 = NV > 1 ? v128.load(p, 16) : x0;
      const x2 = NV > 2 ? v128.load(p, 32) : x0;
      const w0 = v128.load32_splat(pw, 0);
      c00 = madd(w0, x0, c00);
      if (NV > 1) c01 = madd(w0, x1, c01);
      if (NV > 2) c02 = madd(w0, x2, c02);
      const w1 = v128.load32_splat(pw, 4);
      c10 = madd(w1, x0, c10);
      if (NV > 1) c11 = madd(w1, x1, c11);
      if (NV > 2) c12 = madd(w1, x2, c12);
      const w2 = v128.load32_splat(pw, 8);
      c20 = madd(w2, x0, c20);
      if (NV > 1) c21 = madd(w2, x1, c21);
      if (NV > 2) c22 = madd(w2, x2, c22);
      const w3 = v128.load32_splat(pw, 12);
      c30 = madd(w3, x0, c30);
      if (NV > 1) c31 = madd(w3, x1, c31);
      if (NV > 2) c32 = madd(w3, x2, c32);
    }
    if (KW == 3) {
      const q = p + off1;
      const x0 = v128.load(q);
      const x1 = NV > 1 ? v128.load(q, 16) : x0;
      const x2 = NV > 2 ? v128.load(q, 32) : x0;
      const w0 = v128.load32_splat(pw, 16);
      c00 = madd(w0, x0, c00);
      if (NV > 1) c01 = madd(w0, x1, c01);
      if (NV > 2) c02 = madd(w0, x2, c02);
      const w1 = v128.load32_splat(pw, 20);
      c10 = madd(w1, x0, c10);
      if (NV > 1) c11 = madd(w1, x1, c11);
      if (NV > 2) c12 = madd(w1, x2, c12);
      const w2 = v128.load32_splat(pw, 24);
      c20 = madd(w2, x0, c20);
      if (NV > 1) c21 = madd(w2, x1, c21);
      if (NV > 2) c22 = madd(w2, x2, c22);
      const w3 = v128.load32_splat(pw, 28);
      c30 = madd(w3, x0, c30);
      if (NV > 1) c31 = madd(w3, x1, c31);
      if (NV > 2) c32 = madd(w3, x2, c32);
    }
    if (KW == 3) {
      const q = p + off2;
      const x0 = v128.load(q);
      const x1 = NV > 1 ? v128.load(q, 16) : x0;
      const x2 = NV > 2 ? v128.load(q, 32) : x0;
      const w0 = v128.load32_splat(pw, 32);
      c00 = madd(w0, x0, c00);
      if (NV > 1) c01 = madd(w0, x1, c01);
      if (NV > 2) c02 = madd(w0, x2, c02);
      const w1 = v128.load32_splat(pw, 36);
      c10 = madd(w1, x0, c10);
      if (NV > 1) c11 = madd(w1, x1, c11);
      if (NV > 2) c12 = madd(w1, x2, c12);
      const w2 = v128.load32_splat(pw, 40);
      c20 = madd(w2, x0, c20);
      if (NV > 1) c21 = madd(w2, x1, c21);
      if (NV > 2) c22 = madd(w2, x2, c22);
      const w3 = v128.load32_splat(pw, 44);
      c30 = madd(w3, x0, c30);
      if (NV > 1) c31 = madd(w3, x1, c31);
      if (NV > 2) c32 = madd(w3, x2, c32);
    }
    p += rb;
    pw += KW << 4;
  }
  storeOut(NV, dst, res, c00, c01, c02, npx);
  if (nOc > 1) storeOut(NV, dst + plane, res != 0 ? res + plane : 0, c10, c11, c12, npx);
  if (nOc > 2) storeOut(NV, dst + 2 * plane, res != 0 ? res + 2 * plane : 0, c20, c21, c22, npx);
  if (nOc > 3) storeOut(NV, dst + 3 * plane, res != 0 ? res + 3 * plane : 0, c30, c31, c32, npx);
}

/** Any kernel size: walks the table of C·KH·KW tap offsets. */
// @ts-ignore: decorator
@inline function convTab(
  NV: i32, src: usize, tab: usize, T: i32, w: usize, dst: usize, res: usize, plane: usize,
  nOc: i32, npx: i32, bias: usize,
): void {
  const b0 = splat(bias != 0 ? load<f32>(bias) : 0);
  const b1 = splat(bias != 0 && nOc > 1 ? load<f32>(bias, 4) : 0);
  const b2 = splat(bias != 0 && nOc > 2 ? load<f32>(bias, 8) : 0);
  const b3 = splat(bias != 0 && nOc > 3 ? load<f32>(bias, 12) : 0);
  let c00 = b0, c01 = b0, c02 = b0;
  let c10 = b1, c11 = b1, c12 = b1;
  let c20 = b2, c21 = b2, c22 = b2;
  let c30 = b3, c31 = b3, c32 = b3;
  let pw = w;
  const end = tab + (<usize>T << 2);
  for (let pt = tab; pt < end; pt += 4) {
    const p = src + <usize>load<i32>(pt);
    const x0 = v128.load(p);
    const x1 = NV > 1 ? v128.load(p, 16) : x0;
    const x2 = NV > 2 ? v128.load(p, 32) : x0;
    const w0 = v128.load32_splat(pw, 0);
    c00 = madd(w0, x0, c00);
    if (NV > 1) c01 = madd(w0, x1, c01);
    if (NV > 2) c02 = madd(w0, x2, c02);
    const w1 = v128.load32_splat(pw, 4);
    c10 = madd(w1, x0, c10);
    if (NV > 1) c11 = madd(w1, x1, c11);
    if (NV > 2) c12 = madd(w1, x2, c12);
    const w2 = v128.load32_splat(pw, 8);
    c20 = madd(w2, x0, c20);
    if (NV > 1) c21 = madd(w2, x1, c21);
    if (NV > 2) c22 = madd(w2, x2, c22);
    const w3 = v128.load32_splat(pw, 12);
    c30 = madd(w3, x0, c30);
    if (NV > 1) c31 = madd(w3, x1, c31);
    if (NV > 2) c32 = madd(w3, x2, c32);
    pw += 16;
  }
  storeOut(NV, dst, res, c00, c01, c02, npx);
  if (nOc > 1) storeOut(NV, dst + plane, res != 0 ? res + plane : 0, c10, c11, c12, npx);
  if (nOc > 2) storeOut(NV, dst + 2 * plane, res != 0 ? res + 2 * plane : 0, c20, c21, c22, npx);
  if (nOc > 3) storeOut(NV, dst + 3 * plane, res != 0 ? res + 3 * plane : 0, c30, c31, c32, npx);
}

// @ts-ignore: decorator
@inline function storeOut(NV: i32, dst: usize, res: usize, v0: v128, v1: v128, v2: v128, npx: i32): void {
  if (res != 0) {
    v0 = f32x4.add(v0, loadPartial(res, npx));
    if (NV > 1 && npx > 4) v1 = f32x4.add(v1, loadPartial(res + 16, npx - 4));
    if (NV > 2 && npx > 8) v2 = f32x4.add(v2, loadPartial(res + 32, npx - 8));
  }
  storePartial(dst, v0, npx);
  if (NV > 1 && npx > 4) storePartial(dst + 16, v1, npx - 4);
  if (NV > 2 && npx > 8) storePartial(dst + 32, v2, npx - 8);
}
