// Winograd F(2×2, 3×3) for 3×3 stride-1 pad-1 convolutions: 16 multiplies per 2×2 output tile and
// channel pair instead of 36 (2.25× fewer), at a cost in rounding that stays at the level of the direct
// sum (the transforms only add, subtract and halve).
//
// Per tile (4×4 input patch d, 3×3 kernel g): Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A with
//   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 -1 -1].
// Summed over input channels, the elementwise product becomes 16 independent GEMMs, one per position p
// of the 4×4 transformed tile: M_p[o][tile] = Σ_c U_p[o][c] · V_p[c][tile].
//
// Layouts (all in the scratch):
//   U (winogradPack, once per call, shared by the threads): [p][O/OB][C][OB], the conv micro-kernel's
//     packed-weight shape, so one pointer walks a panel of OB output channels; positions uStride apart.
//   V (per thread, per work unit): [p][group][C][TB], a group being TB = 8 horizontally adjacent tiles,
//     so the micro-kernel loads the 8 tiles of one channel as two vectors.
//   M (per thread): [p][OB][TB], one micro-kernel tile per position; it is turned into output pixels
//     (bias and residual added) right away, so the GEMM results of the whole image never exist.
// A work unit is a rectangle of tiles (some tile rows × a run of columns) sized so its V fits in L2
// (VBUDGET); units go to threads from an atomic counter, as in conv.ts. For each block of OB output
// channels the unit's groups are walked with the block's U panels staying in cache.
import { gemmTile, MR, NR } from "./gemm";
import { copyRow, loadPartial, madd, splat, storePartial } from "./common";
import { widenRun } from "./half";

/** Output channels per micro-kernel tile (as conv.ts). */
const OB: i32 = MR; // the shared micro-kernel (gemm.ts) computes MR output channels × NR tiles
/** Tiles per group: two vectors. */
const TB: i32 = NR;
/** Positions in a transformed tile (4×4). */
const P: i32 = 16;
/** Bytes of one micro-kernel result, [OB][TB] floats. */
const TILE_BYTES: i32 = OB * TB * 4;
/** Input channels per block of the packs (see packBlockRows). */
export const PACK_C: i32 = 16;
/** Target bytes of one unit's transformed input. */
const VBUDGET: i32 = 768 << 10;
/** Units per image at least, where it has that many tile rows (see winograd). */
const MIN_UNITS: i32 = 8;

// ---- unit geometry (a pure function of the shape, so the split does not depend on the thread count) -----

// @ts-ignore: decorator
@inline function tilesOf(n: i32): i32 {
  return (n + 1) >> 1;
}

/** Tiles per unit row: whole tile rows padded to TB, or an even share of a row too wide for VBUDGET. */
function unitCols(C: i32, W: i32): i32 {
  const twp = (tilesOf(W) + TB - 1) & ~(TB - 1);
  const maxT = max(TB, (VBUDGET / (P * 4 * C)) & ~(TB - 1));
  const chunks = (twp + maxT - 1) / maxT;
  return ((twp / TB + chunks - 1) / chunks) * TB;
}

/** Tile rows per unit: as many whole rows as the budget allows when one row is a single chunk. */
function unitRows(C: i32, W: i32): i32 {
  const twp = (tilesOf(W) + TB - 1) & ~(TB - 1);
  const cols = unitCols(C, W);
  if (cols < twp) return 1;
  const maxT = max(TB, (VBUDGET / (P * 4 * C)) & ~(TB - 1));
  return max(1, maxT / cols);
}

/** Floats in one staging row: 2 input columns per tile, 2 more for the last tile, slack for vector reads. */
// @ts-ignore: decorator
@inline function stagingLength(cols: i32): i32 {
  return 2 * cols + 16;
}

/**
 * Bytes between U's positions (here and in winograd4.ts): a position's [O/OB][C][OB] rounded up to 4 KiB,
 * plus one cache line. The packs write all positions of a kernel at once, P streams this far apart; a
 * multiple of 4 KiB (as at C = 512) would put them all in one L1 set and thrash it (F(4×4) packing took
 * 9× longer); this puts stream p in the set after stream p - 1's.
 */
// @ts-ignore: decorator
@inline export function uStride(O: i32, C: i32): i32 {
  return ((((O + OB - 1) / OB) * C * (OB << 2) + 4095) & ~4095) + 64;
}

// @ts-ignore: decorator
@inline function uBytes(O: i32, C: i32): i32 {
  return P * uStride(O, C);
}

function threadBytes(C: i32, W: i32): i32 {
  const cols = unitCols(C, W), rows = unitRows(C, W);
  return max(PACK_WIDE_BYTES, P * TILE_BYTES + P * rows * cols * C * 4 + 4 * (stagingLength(cols) << 2));
}

/**
 * Scratch for winogradPack + winograd with nt threads: 16-byte header (the work counter), U, one region
 * per thread (winogradPack's f32 kernels, then winograd's V, M and input rows).
 */
export function winogradScratchBytes(C: i32, H: i32, W: i32, O: i32, nt: i32): i32 {
  return 16 + uBytes(O, C) + nt * threadBytes(C, W);
}

// ---- weights ---------------------------------------------------------------------------------------------

/**
 * Bytes of a pack block's f32 kernels where they are not read from w (see packBlockRows), and the table of
 * the OB row pointers after them.
 */
export const PACK_WIDE_BYTES: i32 = OB * PACK_C * 36 + 32;

/**
 * Where the kernels (o0 + l, c0 .. c0 + cc) of one pack block start as f32, for l < OB, into `rows` as OB
 * pointers (each row's cc kernels follow 36 bytes apart): into w itself for f32 weights; else into `wide`
 * (PACK_C kernels a row), where f16 weights are widened (exactly, as loadWeight does) and rows past O are
 * zeros. So the transforms read f32 and have no branch, and the padding channels' U comes out zero.
 */
export function packBlockRows(
  w: usize, wHalf: bool, O: i32, C: i32, o0: i32, c0: i32, cc: i32, wide: usize, rows: usize, div: i32 = 1,
): void {
  for (let l = 0; l < OB; l++) {
    const o = (o0 + l) / div; // div rows per kernel: an upsampling conv's phases (winograd4.ts)
    const k = <usize>o * <usize>C + <usize>c0; // index of kernel (o, c0)
    let p = wide + <usize>(l * PACK_C * 36);
    if (o >= O) memory.fill(p, 0, <usize>cc * 36);
    else if (wHalf) widenRun(w + k * 18, p, cc * 9);
    else p = w + k * 36;
    store<usize>(rows + (<usize>l << 2), p);
  }
}

/** (a[0], b[0]) as f64x2, from the f32s at a and b. */
// @ts-ignore: decorator
@inline export function load2(a: usize, b: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load32_lane(b, v128.load32_zero(a), 1));
}

/** Stores y · scale rounded to f32 (two lanes: two kernels' values) at d; scale 1 is skipped. */
// @ts-ignore: decorator
@inline export function putScaled(d: usize, y: v128, scale: f64): void {
  v128.store64_lane(d, f32x4.demote_f64x2_zero(scale == 1 ? y : f64x2.mul(y, f64x2.splat(scale))), 0);
}

/**
 * Step 1: U_p = G g Gᵀ for PyTorch [O][C][3][3] weights, into the scratch as [p][O/OB][C][OB] (zero past
 * O). Computed in f64 and rounded once, two kernels (output channels o, o + 1) per f64x2, written straight
 * to U (see uStride). Threads split the output-channel blocks. W: the image width (it sizes the per-thread
 * regions). wHalf: the weights are f16 bits (widened exactly, then transformed).
 */
export function winogradPack(w: usize, wHalf: bool, O: i32, C: i32, W: i32, scratch: usize, tid: i32, nt: i32): void {
  const NB = (O + OB - 1) / OB;
  const ob0 = <i32>((<i64>NB * <i64>tid) / <i64>nt), ob1 = <i32>((<i64>NB * <i64>(tid + 1)) / <i64>nt);
  const u = scratch + 16;
  const pStride = <usize>uStride(O, C);
  const wide = u + <usize>P * pStride + <usize>tid * <usize>threadBytes(C, W), rows = wide + <usize>(OB * PACK_C * 36);
  for (let ob = ob0; ob < ob1; ob++) {
    for (let c0 = 0; c0 < C; c0 += PACK_C) {
      const cc = min(PACK_C, C - c0);
      packBlockRows(w, wHalf, O, C, ob * OB, c0, cc, wide, rows);
      const d = u + (<usize>ob * <usize>C + <usize>c0) * <usize>(OB << 2);
      for (let l = 0; l < OB; l += 2) {
        const a = load<usize>(rows + (<usize>l << 2)), b = load<usize>(rows + (<usize>l << 2), 4);
        for (let c = 0; c < cc; c++) {
          const k = <usize>c * 36;
          packPair(a + k, b + k, d + (<usize>(c * OB + l) << 2), pStride);
        }
      }
    }
  }
}

/**
 * G g Gᵀ of the kernels at a and b (f32) into lanes 0 and 1, pStride bytes between positions. With
 * G = D⁻¹G'', D = diag(1, 2, 2, 1), G'' integer, G'' g G''ᵀ takes only additions (exact in f64 unless a
 * kernel's weights span more than ~2^25) and the scale 1/(D_k D_j), a power of 2, is exact: U is G g Gᵀ
 * rounded once (the halvings applied last rather than first, which changes no bit).
 */
function packPair(a: usize, b: usize, d: usize, pStride: usize): void {
  const g0 = load2(a, b), g1 = load2(a + 4, b + 4), g2 = load2(a + 8, b + 8);
  const g3 = load2(a + 12, b + 12), g4 = load2(a + 16, b + 16), g5 = load2(a + 20, b + 20);
  const g6 = load2(a + 24, b + 24), g7 = load2(a + 28, b + 28), g8 = load2(a + 32, b + 32);
  const e0 = f64x2.add(g0, g6), e1 = f64x2.add(g1, g7), e2 = f64x2.add(g2, g8);
  packRow(d, pStride, g0, g1, g2, 1);
  packRow(d + 4 * pStride, pStride, f64x2.add(e0, g3), f64x2.add(e1, g4), f64x2.add(e2, g5), 0.5);
  packRow(d + 8 * pStride, pStride, f64x2.sub(e0, g3), f64x2.sub(e1, g4), f64x2.sub(e2, g5), 0.5);
  packRow(d + 12 * pStride, pStride, g6, g7, g8, 1);
}

/** One row of U from a row t of G''g and its scale s: s·(t0, ½(t0 + t1 + t2), ½(t0 - t1 + t2), t2). */
// @ts-ignore: decorator
@inline function packRow(d: usize, pStride: usize, t0: v128, t1: v128, t2: v128, s: f64): void {
  const e = f64x2.add(t0, t2);
  putScaled(d, t0, s);
  putScaled(d + pStride, f64x2.add(e, t1), 0.5 * s);
  putScaled(d + 2 * pStride, f64x2.sub(e, t1), 0.5 * s);
  putScaled(d + 3 * pStride, t2, s);
}

// ---- the convolution -------------------------------------------------------------------------------------

/**
 * Step 2: out = conv3×3(x, w, stride 1, pad 1) + bias (+ res), with the U that winogradPack left in the
 * scratch. bias, res: 0 when absent. Threads take units from the atomic counter at `scratch`. up: x is
 * convolved upsampled ×2 (nearest), read so into the staging rows; H, W are then the upsampled size.
 */
export function winograd(
  x: usize, bias: usize, res: usize, out: usize, batch: i32, C: i32, H: i32, W: i32, O: i32, up: bool,
  scratch: usize, tid: i32, nt: i32,
): void {
  const cols = unitCols(C, W);
  const TH = tilesOf(H), TW = tilesOf(W);
  // Small images would make only a few units (a 32×32 latent at 128 channels: 3), leaving threads idle
  // for a third of the call: cap a unit's rows so an image has at least MIN_UNITS when it has the rows.
  // Fewer rows only shrink a unit (the scratch is sized for unitRows) and leave each tile's sums as they
  // were, so the output is the same.
  const rows = min(unitRows(C, W), max(1, (TH + MIN_UNITS - 1) / MIN_UNITS));
  const perRow = (TW + cols - 1) / cols, perImage = perRow * ((TH + rows - 1) / rows);
  const units = batch * perImage;
  const u = scratch + 16;
  const sb = u + <usize>uBytes(O, C) + <usize>tid * <usize>threadBytes(C, W);
  const m = sb;
  const v = m + <usize>(P * TILE_BYTES);
  const staging = v + <usize>(P * rows * cols * C * 4);
  for (let k = atomic.add<i32>(scratch, 1); k < units; k = atomic.add<i32>(scratch, 1)) {
    const n = k / perImage, r = k - n * perImage;
    const ry = r / perRow, rx = r - ry * perRow;
    const ty0 = ry * rows, ty1 = min(TH, ty0 + rows);
    const tx0 = rx * cols, tx1 = min(TW, tx0 + cols);
    const groupsPerRow = (tx1 - tx0 + TB - 1) / TB;
    const G = (ty1 - ty0) * groupsPerRow;
    const xn = x + (<usize>n * <usize>C * <usize>(H >> <i32>up) * <usize>(W >> <i32>up) << 2);
    transformInput(xn, v, staging, C, H, W, up, ty0, ty1, tx0, groupsPerRow, G);
    const plane = <usize>H * <usize>W << 2;
    const on = out + <usize>n * <usize>O * plane;
    const rn = res != 0 ? res + <usize>n * <usize>O * plane : 0;
    unitProduct(u, v, m, C, H, W, O, G, groupsPerRow, ty0, tx0, tx1, bias, rn, on);
  }
}

/**
 * V_p[g][c][·] = (Bᵀ d B)_p for the unit's tiles, channel by channel: the 4 input rows of a tile row go
 * into staging rows with the padding written out (column 0 of a staging row is input column 2·tx0 - 1),
 * then 4 tiles at a time are transformed in vector lanes. Tiles past the image (a partial group) see zeros.
 * up: x is the (H/2)×(W/2) input of an upsampling conv, read upsampled into the staging rows.
 */
function transformInput(
  x: usize, v: usize, staging: usize, C: i32, H: i32, W: i32, up: bool, ty0: i32, ty1: i32, tx0: i32,
  groupsPerRow: i32, G: i32,
): void {
  const SL = stagingLength(groupsPerRow * TB);
  const slBytes = <usize>SL << 2;
  const pStride = <usize>G * <usize>C * <usize>(TB << 2);
  const ix0 = 2 * tx0 - 1;
  const lead = max(0, -ix0); // 1 at the left border
  const first = ix0 + lead;
  const n = max(0, min(W - first, SL - lead));
  const sh = <i32>up, xw = <usize>(W >> sh);
  for (let c = 0; c < C; c++) {
    const xc = x + (<usize>c * <usize>(H >> sh) * xw << 2);
    for (let ty = ty0; ty < ty1; ty++) {
      for (let i = 0; i < 4; i++) {
        const d = staging + <usize>i * slBytes;
        const iy = 2 * ty - 1 + i;
        if (iy < 0 || iy >= H) {
          memory.fill(d, 0, slBytes);
          continue;
        }
        if (lead > 0) store<f32>(d, 0);
        copyRow(d + (<usize>lead << 2), xc + (<usize>(iy >> sh) * xw << 2), first, n, up);
        memory.fill(d + (<usize>(lead + n) << 2), 0, <usize>(SL - lead - n) << 2);
      }
      const gRow = (ty - ty0) * groupsPerRow;
      for (let q = 0; q < groupsPerRow * 2; q++) {
        // tiles 4q .. 4q+3 of this row: group gRow + q/2, lanes (q & 1)·4 ..
        const dst = v + (<usize>(gRow + (q >> 1)) * <usize>C + <usize>c) * <usize>(TB << 2) + (<usize>(q & 1) << 4);
        transform4(staging + (<usize>(8 * q) << 2), slBytes, dst, pStride);
      }
    }
  }
}

/**
 * Bᵀ d B for 4 tiles at once (lane t: the tile starting at staging column 8·q + 2t). Rows first: row i
 * of the patches is deinterleaved into columns d0..d3 and reduced to r_i = (d0 - d2, d1 + d2, d2 - d1,
 * d1 - d3); then the same combination across rows gives the 16 outputs, stored pStride apart.
 */
function transform4(src: usize, slBytes: usize, dst: usize, pStride: usize): void {
  let a = v128.load(src), b = v128.load(src, 16), e = v128.load(src, 8), f = v128.load(src, 24);
  let d0 = f32x4.shuffle(a, b, 0, 2, 4, 6), d1 = f32x4.shuffle(a, b, 1, 3, 5, 7);
  let d2 = f32x4.shuffle(e, f, 0, 2, 4, 6), d3 = f32x4.shuffle(e, f, 1, 3, 5, 7);
  const r00 = f32x4.sub(d0, d2), r01 = f32x4.add(d1, d2), r02 = f32x4.sub(d2, d1), r03 = f32x4.sub(d1, d3);
  let s = src + slBytes;
  a = v128.load(s); b = v128.load(s, 16); e = v128.load(s, 8); f = v128.load(s, 24);
  d0 = f32x4.shuffle(a, b, 0, 2, 4, 6); d1 = f32x4.shuffle(a, b, 1, 3, 5, 7);
  d2 = f32x4.shuffle(e, f, 0, 2, 4, 6); d3 = f32x4.shuffle(e, f, 1, 3, 5, 7);
  const r10 = f32x4.sub(d0, d2), r11 = f32x4.add(d1, d2), r12 = f32x4.sub(d2, d1), r13 = f32x4.sub(d1, d3);
  s += slBytes;
  a = v128.load(s); b = v128.load(s, 16); e = v128.load(s, 8); f = v128.load(s, 24);
  d0 = f32x4.shuffle(a, b, 0, 2, 4, 6); d1 = f32x4.shuffle(a, b, 1, 3, 5, 7);
  d2 = f32x4.shuffle(e, f, 0, 2, 4, 6); d3 = f32x4.shuffle(e, f, 1, 3, 5, 7);
  const r20 = f32x4.sub(d0, d2), r21 = f32x4.add(d1, d2), r22 = f32x4.sub(d2, d1), r23 = f32x4.sub(d1, d3);
  // row 0 of the output combines rows 0 and 2; store it before loading row 3 to keep fewer vectors live
  v128.store(dst, f32x4.sub(r00, r20));
  v128.store(dst + pStride, f32x4.sub(r01, r21));
  v128.store(dst + 2 * pStride, f32x4.sub(r02, r22));
  v128.store(dst + 3 * pStride, f32x4.sub(r03, r23));
  v128.store(dst + 4 * pStride, f32x4.add(r10, r20));
  v128.store(dst + 5 * pStride, f32x4.add(r11, r21));
  v128.store(dst + 6 * pStride, f32x4.add(r12, r22));
  v128.store(dst + 7 * pStride, f32x4.add(r13, r23));
  v128.store(dst + 8 * pStride, f32x4.sub(r20, r10));
  v128.store(dst + 9 * pStride, f32x4.sub(r21, r11));
  v128.store(dst + 10 * pStride, f32x4.sub(r22, r12));
  v128.store(dst + 11 * pStride, f32x4.sub(r23, r13));
  s += slBytes;
  a = v128.load(s); b = v128.load(s, 16); e = v128.load(s, 8); f = v128.load(s, 24);
  d0 = f32x4.shuffle(a, b, 0, 2, 4, 6); d1 = f32x4.shuffle(a, b, 1, 3, 5, 7);
  d2 = f32x4.shuffle(e, f, 0, 2, 4, 6); d3 = f32x4.shuffle(e, f, 1, 3, 5, 7);
  v128.store(dst + 12 * pStride, f32x4.sub(r10, f32x4.sub(d0, d2)));
  v128.store(dst + 13 * pStride, f32x4.sub(r11, f32x4.add(d1, d2)));
  v128.store(dst + 14 * pStride, f32x4.sub(r12, f32x4.sub(d2, d1)));
  v128.store(dst + 15 * pStride, f32x4.sub(r13, f32x4.sub(d1, d3)));
}

/**
 * The 16 GEMMs of one unit and the output transform: for each block of OB output channels, for each
 * group of TB tiles, the 16 micro-kernel tiles into m, then Aᵀ m A into the output.
 */
function unitProduct(
  u: usize, v: usize, m: usize, C: i32, H: i32, W: i32, O: i32, G: i32, groupsPerRow: i32,
  ty0: i32, tx0: i32, tx1: i32, bias: usize, res: usize, out: usize,
): void {
  const NB = (O + OB - 1) / OB;
  const panelU = <usize>C * <usize>(OB << 2), pStrideU = <usize>uStride(O, C);
  const panelV = <usize>C * <usize>(TB << 2), pStrideV = <usize>G * panelV;
  for (let ob = 0; ob < NB; ob++) {
    const ub = u + <usize>ob * panelU;
    for (let g = 0; g < G; g++) {
      const vb = v + <usize>g * panelV;
      // two call sites of gemmTile per iteration: a single-caller function is inlined by binaryen, and
      // inlined its loop lost the spill-free register allocation (see conv.ts)
      for (let p = 0; p < P; p += 2) {
        gemmTile(ub + <usize>p * pStrideU, vb + <usize>p * pStrideV, C, m + <usize>(p * TILE_BYTES));
        gemmTile(ub + <usize>(p + 1) * pStrideU, vb + <usize>(p + 1) * pStrideV, C, m + <usize>((p + 1) * TILE_BYTES));
      }
      const gy = g / groupsPerRow;
      const txs = tx0 + (g - gy * groupsPerRow) * TB;
      outputTransform(m, out, res, bias, H, W, ob * OB, min(OB, O - ob * OB), 2 * (ty0 + gy), 2 * txs, min(TB, tx1 - txs));
    }
  }
}

/**
 * Y = Aᵀ m A (+ bias, + residual) for nOc channels from o0 and nt (1..8) tiles whose top-left output pixel
 * is (oy, ox): rows reduce first, s_i = (m_i0 + m_i1 + m_i2, m_i1 - m_i2 - m_i3), then across rows; the
 * two output columns of 4 tiles are interleaved into 8 consecutive pixels.
 */
function outputTransform(
  m: usize, out: usize, res: usize, bias: usize, H: i32, W: i32, o0: i32, nOc: i32, oy: i32, ox: i32, nt: i32,
): void {
  const plane = <usize>H * <usize>W << 2;
  const two = oy + 1 < H;
  for (let o = 0; o < nOc; o++) {
    const bv = bias != 0 ? v128.load32_splat(bias + (<usize>(o0 + o) << 2)) : splat(0);
    const row0 = (<usize>(o0 + o) * plane) + ((<usize>oy * <usize>W + <usize>ox) << 2);
    for (let h = 0; h < 2 && h * 4 < nt; h++) {
      const a = m + (<usize>o << 5) + (<usize>h << 4);
      let x0 = v128.load(a), x1 = v128.load(a, TILE_BYTES), x2 = v128.load(a, 2 * TILE_BYTES), x3 = v128.load(a, 3 * TILE_BYTES);
      const s00 = f32x4.add(f32x4.add(x0, x1), x2), s01 = f32x4.sub(f32x4.sub(x1, x2), x3);
      x0 = v128.load(a, 4 * TILE_BYTES); x1 = v128.load(a, 5 * TILE_BYTES); x2 = v128.load(a, 6 * TILE_BYTES); x3 = v128.load(a, 7 * TILE_BYTES);
      const s10 = f32x4.add(f32x4.add(x0, x1), x2), s11 = f32x4.sub(f32x4.sub(x1, x2), x3);
      x0 = v128.load(a, 8 * TILE_BYTES); x1 = v128.load(a, 9 * TILE_BYTES); x2 = v128.load(a, 10 * TILE_BYTES); x3 = v128.load(a, 11 * TILE_BYTES);
      const s20 = f32x4.add(f32x4.add(x0, x1), x2), s21 = f32x4.sub(f32x4.sub(x1, x2), x3);
      x0 = v128.load(a, 12 * TILE_BYTES); x1 = v128.load(a, 13 * TILE_BYTES); x2 = v128.load(a, 14 * TILE_BYTES); x3 = v128.load(a, 15 * TILE_BYTES);
      const s30 = f32x4.add(f32x4.add(x0, x1), x2), s31 = f32x4.sub(f32x4.sub(x1, x2), x3);
      const y00 = f32x4.add(f32x4.add(f32x4.add(s00, s10), s20), bv);
      const y01 = f32x4.add(f32x4.add(f32x4.add(s01, s11), s21), bv);
      const y10 = f32x4.add(f32x4.sub(f32x4.sub(s10, s20), s30), bv);
      const y11 = f32x4.add(f32x4.sub(f32x4.sub(s11, s21), s31), bv);
      const px = ox + h * 8;
      const npx = min(min(8, W - px), 2 * (nt - 4 * h));
      const off = row0 + (<usize>(h * 8) << 2);
      storeRow(out + off, res != 0 ? res + off : 0, y00, y01, npx);
      if (two) storeRow(out + off + (<usize>W << 2), res != 0 ? res + off + (<usize>W << 2) : 0, y10, y11, npx);
    }
  }
}

/** Pixels [y0[0], y1[0], y0[1], y1[1], …] (npx of them, 1..8) at d, plus the residual at r when given. */
// @ts-ignore: decorator
@inline function storeRow(d: usize, r: usize, y0: v128, y1: v128, npx: i32): void {
  let lo = f32x4.shuffle(y0, y1, 0, 4, 1, 5), hi = f32x4.shuffle(y0, y1, 2, 6, 3, 7);
  if (r != 0) {
    lo = f32x4.add(lo, loadPartial(r, npx));
    if (npx > 4) hi = f32x4.add(hi, loadPartial(r + 16, npx - 4));
  }
  storePartial(d, lo, npx);
  if (npx > 4) storePartial(d + 16, hi, npx - 4);
}
