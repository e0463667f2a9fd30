// 2-D convolution as an implicit GEMM; no im2col of the image is ever built.
//
// Input side: for one output row, the KH input rows its taps need are copied per input channel into the
// thread's scratch with their zero padding written out, and for stride s split into s phases (even / odd
// columns for s = 2). Every tap (c, ky, kx) of a block of output pixels is then a contiguous run of floats
// at a fixed byte offset from the block start, kept in a table of C·KH·KW offsets that the micro-kernel
// walks, one tap per loop iteration. 1×1 stride-1 unpadded convolutions copy chunks of pixels the same way.
//
// Weight side: conv2dPack first packs the weights into [O/OB][C·KH·KW][OB] in the scratch, once per call
// (cost ~1/(2·OH·OW) of the multiply-adds; no second copy of the model stays resident), so the
// micro-kernel reaches all weights through one pointer with immediate offsets.
//
// Micro-kernel: OB output channels × NV vectors of 4 output pixels, all accumulators in registers. Per tap:
// NV unaligned input loads, OB broadcast weight loads, OB·NV multiply-adds. V8 gives wasm 15 vector
// registers on x64 and its scheduler issues a loop body's loads first, so the body holds exactly one tap
// (unrolling taps spilled accumulators) and the tile is 6 × 2: 12 accumulators + 2 inputs + 1 weight.
import { copyRow, loadPartial, madd, sliceBegin, splat, storePartial } from "./common";
import { loadWeight } from "./half";

/** Output channels per tile; weights are packed in blocks of OB. */
const OB: i32 = 6;
/** Pixels per chunk in the 1×1 path (a multiple of 8). */
const DIRECT_CHUNK: i32 = 128;
/** Target size of the scratch rows of one input-channel chunk. */
const CHUNK_BYTES: i32 = 128 << 10;
/** A tile's accumulators (OB × 2 vectors) as the micro-kernel leaves them. */
const TILE_BYTES: i32 = OB * 2 * 16;

/** Floats in one phase of a scratch row: a pixel tile may read up to 8 + (KW-1)/s floats past its start. */
// @ts-ignore: decorator
@inline function phaseLength(OW: i32, KW: i32, s: i32): i32 {
  return (OW + 8 + (KW - 1) / s + 3) & ~3;
}

// @ts-ignore: decorator
@inline function isDirect(KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, H: i32, W: i32, OH: i32, OW: i32): bool {
  return KH == 1 && KW == 1 && s == 1 && padTop == 0 && padLeft == 0 && OH == H && OW == W;
}

/**
 * Input channels per pass over the scratch rows: a chunk of rows is filled and every output channel
 * accumulates over it before the next chunk, so the rows a pixel tile walks stay in cache however large
 * C × OW gets (512 channels of 128-wide rows are ~0.9 MB). On a machine shared with other jobs the gain
 * could not be told from noise; the layers with the largest C × OW were the slowest before it.
 */
// @ts-ignore: decorator
@inline function channelChunk(C: i32, KH: i32, rowBytes: i32): i32 {
  return max(1, min(C, CHUNK_BYTES / (KH * rowBytes)));
}

/** Bytes of one scratch row (per channel and kernel row), all s phases. */
// @ts-ignore: decorator
@inline function scratchRowBytes(direct: bool, OW: i32, KW: i32, s: i32): i32 {
  return direct ? (DIRECT_CHUNK + 8) << 2 : s * (phaseLength(OW, KW, s) << 2);
}

/** Bytes of the packed weights: ceil(O/OB) blocks of [C·KH·KW][OB] floats. */
// @ts-ignore: decorator
@inline function packedBytes(O: i32, T: i32): i32 {
  return ((O + OB - 1) / OB) * T * (OB << 2);
}

/** Bytes of one thread's own scratch: a tile, the tap table, one chunk of input rows. */
function threadScratchBytes(C: i32, H: i32, W: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, OH: i32, OW: i32): i32 {
  const T = C * KH * KW;
  const rowBytes = scratchRowBytes(isDirect(KH, KW, s, padTop, padLeft, H, W, OH, OW), OW, KW, s);
  return TILE_BYTES + (((T + 3) & ~3) << 2) + channelChunk(C, KH, rowBytes) * KH * rowBytes;
}

/**
 * Scratch bytes for conv2dPack + conv2d with nt threads: a 16-byte header (conv2d's work counter, zeroed
 * by the caller before conv2d), the packed weights (shared by all threads), one region per thread.
 */
export function conv2dScratchBytes(
  C: i32, H: i32, W: i32, O: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, OH: i32, OW: i32, nt: i32,
): i32 {
  return 16 + packedBytes(O, C * KH * KW) + nt * threadScratchBytes(C, H, W, KH, KW, s, padTop, padLeft, OH, OW);
}

/**
 * Step 1 of a convolution: packs PyTorch [O][C][KH][KW] weights into the scratch (see conv2dScratchBytes)
 * as [O/OB][C·KH·KW][OB], zero past O. Threads split the output-channel blocks. wHalf: the weights are
 * f16 bits, widened exactly while packing.
 */
export function conv2dPack(w: usize, wHalf: bool, O: i32, C: i32, KH: i32, KW: i32, scratch: usize, tid: i32, nt: i32): void {
  const NB = (O + OB - 1) / OB;
  const ob0 = sliceBegin(NB, tid, nt), ob1 = sliceBegin(NB, tid + 1, nt);
  const T = C * KH * KW;
  packWeights(w, wHalf, scratch + 16 + <usize>ob0 * <usize>T * <usize>(OB << 2), ob0, ob1, O, T);
}

/** Packs output-channel blocks [ob0, ob1) of PyTorch [O][T] weights into [ob - ob0][T][OB], zero past O. */
function packWeights(w: usize, half: bool, wp: usize, ob0: i32, ob1: i32, O: i32, T: i32): void {
  const row = <usize>T << (half ? 1 : 2);
  for (let ob = ob0; ob < ob1; ob++) {
    const dst = wp + <usize>(ob - ob0) * <usize>T * <usize>(OB << 2);
    for (let l = 0; l < OB; l++) {
      const o = ob * OB + l;
      const src = w + <usize>o * row;
      let p = dst + (<usize>l << 2);
      if (o < O) {
        for (let t = 0; t < T; t++) {
          store<f32>(p, loadWeight(src, <usize>t, half));
          p += <usize>(OB << 2);
        }
      } else {
        for (let t = 0; t < T; t++) {
          store<f32>(p, 0);
          p += <usize>(OB << 2);
        }
      }
    }
  }
}

/**
 * Step 2: out[n][o][oy][ox] = bias[o] + Σ x[n][c][oy·s+ky-padTop][ox·s+kx-padLeft] · w[o][c][ky][kx]
 * (+ residual), with the weights conv2dPack left in the scratch. bias, res: 0 when absent. The
 * bottom/right padding is implied by OH, OW. Threads take work units (output rows, or 1×1 pixel chunks)
 * from the atomic counter at `scratch`, so one that is descheduled for a while does not hold up the rest.
 * up: convolve x upsampled ×2 (nearest) without forming it; H, W are then the upsampled size (stride 1,
 * KH > 1 only).
 */
export function conv2d(
  x: usize, bias: usize, res: usize, out: usize,
  batch: i32, C: i32, H: i32, W: i32, O: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32,
  OH: i32, OW: i32, up: bool, scratch: usize, tid: i32, nt: i32,
): void {
  const T = C * KH * KW;
  const direct = isDirect(KH, KW, s, padTop, padLeft, H, W, OH, OW);
  const counter = scratch;
  const wp = scratch + 16;
  const sb = wp + <usize>packedBytes(O, T) + <usize>tid * <usize>threadScratchBytes(C, H, W, KH, KW, s, padTop, padLeft, OH, OW);
  const acc = sb; // one tile's raw accumulators
  const tab = sb + TILE_BYTES;
  const rows = tab + (<usize>((T + 3) & ~3) << 2);
  const rowBytes = scratchRowBytes(direct, OW, KW, s);
  const CC = channelChunk(C, KH, rowBytes);
  const PL = phaseLength(OW, KW, s);
  // tap table for one chunk: byte offset of tap (c, ky, kx) from a pixel tile's start: scratch row
  // c·KH + ky, phase kx % s, index kx / s (the 1×1 path: row c)
  for (let c = 0; c < CC; c++) {
    for (let ky = 0; ky < KH; ky++) {
      for (let kx = 0; kx < KW; kx++) {
        const off = <usize>(c * KH + ky) * <usize>rowBytes + (direct ? 0 : <usize>((kx % s) * PL + kx / s) << 2);
        store<i32>(tab + (<usize>((c * KH + ky) * KW + kx) << 2), <i32>off);
      }
    }
  }
  const units = direct ? batch * ((H * W + DIRECT_CHUNK - 1) / DIRECT_CHUNK) : batch * OH;
  for (let u = atomic.add<i32>(counter, 1); u < units; u = atomic.add<i32>(counter, 1)) {
    convUnit(direct, u, x, wp, bias, res, out, batch, C, H, W, O, KH, KW, s, padTop, padLeft, OH, OW, up, tab, rows, rowBytes, CC, PL, acc);
  }
}

/**
 * Work unit u, all output channels: output row u of the batch, or 1×1 pixel chunk u. The input-channel
 * reduction runs in chunks of CC channels.
 */
function convUnit(
  direct: bool, u: i32, x: usize, wp: usize, bias: usize, res: usize, out: usize,
  batch: i32, C: i32, H: i32, W: i32, O: i32, KH: i32, KW: i32, s: i32, padTop: i32, padLeft: i32, OH: i32, OW: i32,
  up: bool, tab: usize, rows: usize, rowBytes: i32, CC: i32, PL: i32, acc: usize,
): void {
  const KK = KH * KW;
  const T = C * KK;
  const outPlane = <usize>OH * <usize>OW << 2;
  const inPlane = <usize>(H >> <i32>up) * <usize>(W >> <i32>up) << 2;
  if (direct) {
    // 1×1: a chunk of DIRECT_CHUNK pixels is copied into contiguous scratch rows (reading the planes in
    // place put every tap on a different page)
    const HW = H * W;
    const per = (HW + DIRECT_CHUNK - 1) / DIRECT_CHUNK;
    const n = u / per, q = (u - n * per) * DIRECT_CHUNK;
    const len = min(DIRECT_CHUNK, HW - q);
    const src = x + <usize>n * <usize>C * inPlane + (<usize>q << 2);
    const off = <usize>n * <usize>O * outPlane + (<usize>q << 2);
    for (let c0 = 0; c0 < C; c0 += CC) {
      const cc = min(CC, C - c0);
      for (let c = 0; c < cc; c++) {
        const d = rows + <usize>c * <usize>rowBytes;
        memory.copy(d, src + <usize>(c0 + c) * inPlane, <usize>len << 2);
        memory.fill(d + (<usize>len << 2), 0, <usize>rowBytes - (<usize>len << 2));
      }
      const last = c0 + cc == C;
      convRow(rows, tab, T, c0 * KK, cc * KK, wp, acc, out + off, last && res != 0 ? res + off : 0, outPlane, O, len, c0 == 0 ? bias : 0, c0 > 0);
    }
    return;
  }
  const n = u / OH, oy = u - n * OH;
  const off = <usize>n * <usize>O * outPlane + (<usize>oy * <usize>OW << 2);
  for (let c0 = 0; c0 < C; c0 += CC) {
    const cc = min(CC, C - c0);
    fillRows(x + (<usize>n * <usize>C + <usize>c0) * inPlane, rows, rowBytes, cc, H, W, up, KH, s, PL, oy * s - padTop, padLeft);
    const last = c0 + cc == C;
    convRow(rows, tab, T, c0 * KK, cc * KK, wp, acc, out + off, last && res != 0 ? res + off : 0, outPlane, O, OW, c0 == 0 ? bias : 0, c0 > 0);
  }
}

/**
 * Copies input rows iy0 .. iy0+KH-1 of every channel into scratch rows (c·KH + ky), zero-padded, split
 * into s phases: phase ph, index j holds input column j·s + ph - padLeft. up (stride 1 only): x is the
 * (H/2)×(W/2) input of an upsampling conv, its rows read upsampled.
 */
function fillRows(
  x: usize, rows: usize, rowBytes: i32, C: i32, H: i32, W: i32, up: bool, KH: i32, s: i32, PL: i32, iy0: i32,
  padLeft: i32,
): void {
  const sh = <i32>up;
  const rowIn = <usize>(W >> sh) << 2;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < KH; ky++) {
      const dst = rows + <usize>(c * KH + ky) * <usize>rowBytes;
      const iy = iy0 + ky;
      if (iy < 0 || iy >= H) {
        memory.fill(dst, 0, <usize>rowBytes);
        continue;
      }
      const src = x + (<usize>c * <usize>(H >> sh) + <usize>(iy >> sh)) * rowIn;
      if (s == 1) {
        const lead = min(padLeft, PL);
        if (lead > 0) memory.fill(dst, 0, <usize>lead << 2);
        const n = min(W, PL - lead);
        copyRow(dst + (<usize>lead << 2), src, 0, n, up);
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
 * One row of npx output pixels for O output channels, over taps [t0, t0 + Tc) of the T per channel
 * block. src: where pixel 0's taps start; wp: packed weights of these channels; acc: the tile scratch;
 * dst/res: pixel 0 of the first channel; plane: bytes between output channels. accumulate: add to what
 * out holds (a later channel chunk); bias and res are passed only with the first and last chunk.
 */
function convRow(
  src: usize, tab: usize, T: i32, t0: i32, Tc: i32, wp: usize, acc: usize, dst: usize, res: usize, plane: usize,
  O: i32, npx: i32, bias: usize, accumulate: bool,
): void {
  const wBlock = <usize>T * <usize>(OB << 2);
  for (let ob = 0; ob < O; ob += OB) {
    const nOc = min(OB, O - ob);
    const w = wp + <usize>(ob / OB) * wBlock + <usize>(t0 * OB << 2);
    const d = dst + <usize>ob * plane;
    const rs = res != 0 ? res + <usize>ob * plane : 0;
    const b = bias != 0 ? bias + (<usize>ob << 2) : 0;
    // 8-pixel tiles; a last run of 1..4 pixels takes the 4-pixel tile. convTile2 is called from two places
    // on purpose: binaryen inlines single-caller functions, and inlined into this function its loop
    // no longer got a spill-free register allocation from V8 (~35% slower).
    let p = 0;
    for (; p + 8 <= npx; p += 8) {
      const o = <usize>p << 2;
      convTile2(src + o, tab, Tc, w, acc);
      finishTile(acc, d + o, rs != 0 ? rs + o : 0, plane, nOc, 8, b, accumulate);
    }
    const left = npx - p, o = <usize>p << 2;
    if (left > 4) {
      convTile2(src + o, tab, Tc, w, acc);
      finishTile(acc, d + o, rs != 0 ? rs + o : 0, plane, nOc, left, b, accumulate);
    } else if (left > 0) {
      convTile1(src + o, tab, Tc, w, acc);
      finishTile(acc, d + o, rs != 0 ? rs + o : 0, plane, nOc, left, b, accumulate);
    }
  }
}

function convTile2(src: usize, tab: usize, T: i32, w: usize, acc: usize): void {
  convTile(2, src, tab, T, w, acc);
}
function convTile1(src: usize, tab: usize, T: i32, w: usize, acc: usize): void {
  convTile(1, src, tab, T, w, acc);
}

/**
 * The micro-kernel: Σ over the T taps of OB weights × NV input vectors, raw sums to acc[o][v]. It is kept
 * this bare on purpose: with bias, residual and partial stores in the same function, V8's register
 * allocator kept some accumulators on the stack for the whole loop. NV (1 or 2) is a compile-time
 * constant at each call site, so the unused accumulators fold away.
 */
// @ts-ignore: decorator
@inline function convTile(NV: i32, src: usize, tab: usize, T: i32, w: usize, acc: usize): void {
  let c00 = splat(0), c01 = splat(0), c10 = splat(0), c11 = splat(0), c20 = splat(0), c21 = splat(0);
  let c30 = splat(0), c31 = splat(0), c40 = splat(0), c41 = splat(0), c50 = splat(0), c51 = splat(0);
  let pw = w;
  const end = tab + (<usize>T << 2);
  for (let pt = tab; pt < end; pt += 4) {
    const p = src + <usize>load<i32>(pt);
    const x0 = v128.load(p);
    const x1 = NV > 1 ? v128.load(p, 16) : x0;
    const w0 = v128.load32_splat(pw);
    c00 = madd(w0, x0, c00);
    if (NV > 1) c01 = madd(w0, x1, c01);
    const w1 = v128.load32_splat(pw, 4);
    c10 = madd(w1, x0, c10);
    if (NV > 1) c11 = madd(w1, x1, c11);
    const w2 = v128.load32_splat(pw, 8);
    c20 = madd(w2, x0, c20);
    if (NV > 1) c21 = madd(w2, x1, c21);
    const w3 = v128.load32_splat(pw, 12);
    c30 = madd(w3, x0, c30);
    if (NV > 1) c31 = madd(w3, x1, c31);
    const w4 = v128.load32_splat(pw, 16);
    c40 = madd(w4, x0, c40);
    if (NV > 1) c41 = madd(w4, x1, c41);
    const w5 = v128.load32_splat(pw, 20);
    c50 = madd(w5, x0, c50);
    if (NV > 1) c51 = madd(w5, x1, c51);
    pw += OB << 2;
  }
  // (stored in the order they were computed: V8 schedules the loop body to match, which keeps it spill-free)
  v128.store(acc, c00, 0);
  if (NV > 1) v128.store(acc, c01, 16);
  v128.store(acc, c10, 32);
  if (NV > 1) v128.store(acc, c11, 48);
  v128.store(acc, c20, 64);
  if (NV > 1) v128.store(acc, c21, 80);
  v128.store(acc, c30, 96);
  if (NV > 1) v128.store(acc, c31, 112);
  v128.store(acc, c40, 128);
  if (NV > 1) v128.store(acc, c41, 144);
  v128.store(acc, c50, 160);
  if (NV > 1) v128.store(acc, c51, 176);
}

/** out[o][0..npx) = acc[o] + (out[o] if accumulating | bias[o]) (+ res[o]) for the first nOc channels. */
function finishTile(acc: usize, dst: usize, res: usize, plane: usize, nOc: i32, npx: i32, bias: usize, accumulate: bool): void {
  for (let o = 0; o < nOc; o++) {
    const a = acc + (<usize>o << 5), d = dst + <usize>o * plane;
    let v0 = v128.load(a), v1 = v128.load(a, 16);
    if (accumulate) {
      v0 = f32x4.add(v0, loadPartial(d, npx));
      if (npx > 4) v1 = f32x4.add(v1, loadPartial(d + 16, npx - 4));
    } else if (bias != 0) {
      const b = v128.load32_splat(bias + (<usize>o << 2));
      v0 = f32x4.add(v0, b);
      v1 = f32x4.add(v1, b);
    }
    if (res != 0) {
      const r = res + <usize>o * plane;
      v0 = f32x4.add(v0, loadPartial(r, npx));
      if (npx > 4) v1 = f32x4.add(v1, loadPartial(r + 16, npx - 4));
    }
    storePartial(d, v0, npx);
    if (npx > 4) storePartial(d + 16, v1, npx - 4);
  }
}
