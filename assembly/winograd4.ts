// Winograd F(4×4, 3×3) for 3×3 stride-1 pad-1 convolutions: 36 multiplies per 4×4 output tile and channel
// pair instead of 144 (4× fewer; F(2×2) in winograd.ts saves 2.25×), at a cost in rounding: the transforms
// now scale by up to 8, so the error grows with the tile.
//
// Interpolation points (0, 1, -1, 2, -½, ∞): of the sets (0, ±1, a, b, ∞) with a, b among ±¼, ±⅓, ±½, ±⅔,
// ±¾, ±3/2, ±2, ±3, ±4, the lowest RMS error in a simulation of this f32 arithmetic against float64 (64 and
// 512 channels); the customary (0, ±1, ±2, ∞) had 1.5× its RMS and 2-3× its worst error. A point paired with
// its negated reciprocal keeps Aᵀ's powers and G's Lagrange denominators in balance (as Barabasz et al.
// observe in "Error analysis and improving the accuracy of Winograd convolution"). With them
//   Bᵀ = [1  3/2  -2  -3/2  1  0;  0 -1 -5/2 -1/2 1 0;  0 1 1/2 -5/2 1 0;  0 -1/2 -1 1/2 1 0;
//         0  2  -1  -2  1  0;  0  1  3/2  -2  -3/2  1]
//   G  = [1 0 0; -1/3 -1/3 -1/3; 1/3 -1/3 1/3; 1/15 2/15 4/15; -16/15 8/15 -4/15; 0 0 1]
//   Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -1/2 0; 0 1 1 4 1/4 0; 0 1 -1 8 -1/8 1]
// and Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A for a 6×6 input patch d. Everything else is winograd.ts's scheme with 36
// positions instead of 16: U [p][O/OB][C][OB] packed once per call, V [p][group][C][TB] per work unit (8
// horizontally adjacent tiles per group), the shared 6×8 micro-kernel for the 36 GEMMs, the output
// transform (bias, residual) right after each group's GEMMs, units from an atomic counter.
//
// Upsampling convolutions (diffusers Upsample2D: nearest ×2, then this conv) run on the low-resolution input.
// Output pixel (2i + a, 2j + b) of the upsampled conv reads input rows i-1..i+1 with the kernel's rows merged
// as (g0, g1 + g2, 0) for a = 0 and (0, g0 + g1, g2) for a = 1, the columns likewise with b: four phase
// kernels, each a 2×2 conv placed in a 3×3 one. Stacked as 4·O output rows of one GEMM, they share the
// input transform of the low-resolution tiles (a quarter of the upsampled one's) and the output transform
// writes each phase's pixels interleaved into the 2H×2W output. U is 4× larger, so the phases may run in
// passes of np (1, 2 or 4) over the same input (the caller picks np; each pass packs its own U). Where even
// two phases' U is too large, the conv runs on the upsampled geometry instead, its input rows read upsampled
// while staging: the work of a plain conv, no upsampled tensor either.
import { gemmTile, MR, NR } from "./gemm";
import { copyRow, loadPartial, splat, storePartial } from "./common";
import { load2, PACK_C, PACK_WIDE_BYTES, packBlockRows, putScaled, uStride } from "./winograd";

const OB: i32 = MR;
const TB: i32 = NR;
/** Positions in a transformed tile (6×6). */
const P: i32 = 36;
const TILE_BYTES: i32 = OB * TB * 4;
/**
 * Target bytes of one unit's transformed input. Larger than winograd.ts's: each unit walks all of U (36/16 of
 * F(2×2)'s), so at 512 channels units of 8 tiles (768 KiB) spent ~15% more time than units of 24 (this, past
 * L2 but still cheaper than re-reading U); no change measured at 128 channels.
 */
const VBUDGET: i32 = 2304 << 10;
/** Input channels per partial sum of the GEMMs (see unitProduct). */
const KC: i32 = 32;
/**
 * Per-thread room for the transforms' intermediate vectors: the input transform's 6×6, or the output
 * transform's column pass (4×6) and row vectors (4) for two channels; and a GEMM's partial sums.
 */
const TMP_BYTES: i32 = 1024;

// ---- unit geometry (a pure function of the shape, as in winograd.ts) --------------------------------------

// @ts-ignore: decorator
@inline function tilesOf(n: i32): i32 {
  return (n + 3) >> 2;
}

function maxTiles(C: i32): i32 {
  return max(TB, (VBUDGET / (P * 4 * C)) & ~(TB - 1));
}

function unitCols(C: i32, W: i32): i32 {
  const twp = (tilesOf(W) + TB - 1) & ~(TB - 1);
  const chunks = (twp + maxTiles(C) - 1) / maxTiles(C);
  return ((twp / TB + chunks - 1) / chunks) * TB;
}

function unitRows(C: i32, W: i32): i32 {
  const twp = (tilesOf(W) + TB - 1) & ~(TB - 1);
  const cols = unitCols(C, W);
  if (cols < twp) return 1;
  return max(1, maxTiles(C) / cols);
}

/** Floats in one staging row: 4 input columns per tile, 2 more for the last, slack for the vector reads. */
// @ts-ignore: decorator
@inline function stagingLength(cols: i32): i32 {
  return 4 * cols + 16;
}

/**
 * Bytes between positions in V (G groups of C channels): one cache line more than their size, so the 36
 * streams the input transform writes do not sit a multiple of 4 KiB apart (one L1 set) as G·C·32 often does.
 */
// @ts-ignore: decorator
@inline function vStride(G: i32, C: i32): i32 {
  return G * C * (TB << 2) + 64;
}

// @ts-ignore: decorator
@inline function uBytes(O: i32, C: i32): i32 {
  return P * uStride(O, C);
}

function threadBytes(C: i32, W: i32): i32 {
  const cols = unitCols(C, W), rows = unitRows(C, W);
  return max(PACK_WIDE_BYTES, P * TILE_BYTES + TMP_BYTES + P * vStride(rows * cols / TB, C) + 6 * (stagingLength(cols) << 2));
}

/** Scratch for winograd4Pack + winograd4 with nt threads: the work counter, U, one region per thread. */
export function winograd4ScratchBytes(C: i32, H: i32, W: i32, O: i32, nt: i32): i32 {
  return 16 + uBytes(O, C) + nt * threadBytes(C, W);
}

// ---- weights ---------------------------------------------------------------------------------------------

// G = D⁻¹G'' with G'' integer: its rows (1 0 0), (1 1 1), (1 -1 1), (1 2 4), (4 -2 1), (0 0 1) over
// D = diag(1, -3, 3, 15, -15/4, 1) (signs and the power of 2 of row 4 folded into D). U = G g Gᵀ is then
// (G'' g G''ᵀ)[k][j] / (D_k D_j): small-integer sums, exact in f64 unless a kernel's weights span more than ~2^21,
// times one f64 constant, the reciprocal of D_k D_j (≤ 1 f64 ulp off the quotient), rounded to f32 once.
const D1: f64 = -3;
const D2: f64 = 3;
const D3: f64 = 15;
const D4: f64 = -3.75;

/**
 * Step 1: U = G g Gᵀ into the scratch as [p][O'/OB][C][OB], zero past O'; threads split the output-channel
 * blocks. W: the image width (it sizes the per-thread regions). Two kernels (output channels o, o + 1) per
 * f64x2, written straight to U: its 36 streams are uStride apart, so they do not share an L1 set.
 * np = 0: O' = O. np > 0, an upsampling conv's pass over phases p0 .. p0 + np - 1: O' = np·O, row o' the
 * phase kernel p0 + o' % np of output channel o' / np, merged from g in f64 (exactly) before the transform.
 * Also resets the work counter for the winograd4 step after it (a later pass reuses it).
 */
export function winograd4Pack(
  w: usize, wHalf: bool, O: i32, C: i32, W: i32, np: i32, p0: i32, scratch: usize, tid: i32, nt: i32,
): void {
  if (tid == 0) atomic.store<i32>(scratch, 0);
  const Og = np > 0 ? np * O : O;
  const NB = (Og + OB - 1) / OB;
  const ob0 = <i32>((<i64>NB * <i64>tid) / <i64>nt), ob1 = <i32>((<i64>NB * <i64>(tid + 1)) / <i64>nt);
  const u = scratch + 16;
  const pStride = <usize>uStride(Og, C);
  const wide = u + <usize>P * pStride + <usize>tid * <usize>threadBytes(C, W), rows = wide + <usize>(OB * PACK_C * 36);
  for (let ob = ob0; ob < ob1; ob++) {
    for (let c0 = 0; c0 < C; c0 += PACK_C) {
      const cc = min(PACK_C, C - c0);
      packBlockRows(w, wHalf, O, C, ob * OB, c0, cc, wide, rows, max(1, np));
      const d = u + (<usize>ob * <usize>C + <usize>c0) * <usize>(OB << 2);
      for (let l = 0; l < OB; l += 2) {
        const a = load<usize>(rows + (<usize>l << 2)), b = load<usize>(rows + (<usize>l << 2), 4);
        // the pair's phases: rows a the same; columns b = (0, 1) when np ≥ 2 (o' even), else both p0's
        const ph = np > 0 ? p0 + (ob * OB + l) % np : 0;
        const lanesB = np >= 2 ? 2 : ph & 1;
        for (let c = 0; c < cc; c++) {
          const k = <usize>c * 36;
          const dk = d + (<usize>(c * OB + l) << 2);
          if (np == 0) packPair4(a + k, b + k, dk, pStride);
          else packPhasePair4(a + k, b + k, ph >> 1, lanesB, dk, pStride);
        }
      }
    }
  }
}

/** G g Gᵀ of the kernels at a and b (f32) into lanes 0 and 1, pStride bytes between positions. */
function packPair4(a: usize, b: usize, d: usize, pStride: usize): void {
  packKernels4(
    load2(a, b), load2(a + 4, b + 4), load2(a + 8, b + 8), load2(a + 12, b + 12), load2(a + 16, b + 16),
    load2(a + 20, b + 20), load2(a + 24, b + 24), load2(a + 28, b + 28), load2(a + 32, b + 32), d, pStride,
  );
}

/**
 * As packPair4 for phase kernels of the kernels at a and b: rows merged for phase row ra (both lanes),
 * columns for b = lanesB (0 or 1, both lanes) or b = 0 in lane 0 and 1 in lane 1 (lanesB 2).
 */
function packPhasePair4(a: usize, b: usize, ra: i32, lanesB: i32, d: usize, pStride: usize): void {
  const g0 = load2(a, b), g1 = load2(a + 4, b + 4), g2 = load2(a + 8, b + 8);
  const g3 = load2(a + 12, b + 12), g4 = load2(a + 16, b + 16), g5 = load2(a + 20, b + 20);
  const g6 = load2(a + 24, b + 24), g7 = load2(a + 28, b + 28), g8 = load2(a + 32, b + 32);
  const z = f64x2.splat(0);
  // rows: a = 0 → (row 0, row 1 + row 2, 0); a = 1 → (0, row 0 + row 1, row 2)
  const r00 = ra == 0 ? g0 : z, r01 = ra == 0 ? g1 : z, r02 = ra == 0 ? g2 : z;
  const r10 = ra == 0 ? f64x2.add(g3, g6) : f64x2.add(g0, g3);
  const r11 = ra == 0 ? f64x2.add(g4, g7) : f64x2.add(g1, g4);
  const r12 = ra == 0 ? f64x2.add(g5, g8) : f64x2.add(g2, g5);
  const r20 = ra == 0 ? z : g6, r21 = ra == 0 ? z : g7, r22 = ra == 0 ? z : g8;
  packKernels4(
    phaseCol(0, r00, r01, r02, lanesB), phaseCol(1, r00, r01, r02, lanesB), phaseCol(2, r00, r01, r02, lanesB),
    phaseCol(0, r10, r11, r12, lanesB), phaseCol(1, r10, r11, r12, lanesB), phaseCol(2, r10, r11, r12, lanesB),
    phaseCol(0, r20, r21, r22, lanesB), phaseCol(1, r20, r21, r22, lanesB), phaseCol(2, r20, r21, r22, lanesB),
    d, pStride,
  );
}

/** Column j of a kernel row (x0, x1, x2) merged for phase column b: (x0, x1 + x2, 0) or (0, x0 + x1, x2). */
// @ts-ignore: decorator
@inline function phaseCol(j: i32, x0: v128, x1: v128, x2: v128, lanesB: i32): v128 {
  const z = f64x2.splat(0);
  const b0 = j == 0 ? x0 : j == 1 ? f64x2.add(x1, x2) : z;
  const b1 = j == 0 ? z : j == 1 ? f64x2.add(x0, x1) : x2;
  if (lanesB == 0) return b0;
  if (lanesB == 1) return b1;
  return v128.bitselect(b0, b1, i64x2(-1, 0));
}

/** G g Gᵀ of the kernel pair g0..g8 (f64x2, row-major) into lanes 0 and 1, pStride bytes between positions. */
// @ts-ignore: decorator
@inline function packKernels4(
  g0: v128, g1: v128, g2: v128, g3: v128, g4: v128, g5: v128, g6: v128, g7: v128, g8: v128, d: usize, pStride: usize,
): void {
  // rows of G''g, each computed where its row of U is
  const s0 = f64x2.add(g0, g6), s1 = f64x2.add(g1, g7), s2 = f64x2.add(g2, g8);
  const h0 = f64x2.add(g3, g3), h1 = f64x2.add(g4, g4), h2 = f64x2.add(g5, g5);
  const four = f64x2.splat(4);
  packRow4(d, pStride, g0, g1, g2, 1);
  packRow4(d + 6 * pStride, pStride, f64x2.add(s0, g3), f64x2.add(s1, g4), f64x2.add(s2, g5), D1);
  packRow4(d + 12 * pStride, pStride, f64x2.sub(s0, g3), f64x2.sub(s1, g4), f64x2.sub(s2, g5), D2);
  packRow4(
    d + 18 * pStride, pStride, f64x2.add(f64x2.add(g0, f64x2.mul(four, g6)), h0),
    f64x2.add(f64x2.add(g1, f64x2.mul(four, g7)), h1), f64x2.add(f64x2.add(g2, f64x2.mul(four, g8)), h2), D3,
  );
  packRow4(
    d + 24 * pStride, pStride, f64x2.sub(f64x2.add(f64x2.mul(four, g0), g6), h0),
    f64x2.sub(f64x2.add(f64x2.mul(four, g1), g7), h1), f64x2.sub(f64x2.add(f64x2.mul(four, g2), g8), h2), D4,
  );
  packRow4(d + 30 * pStride, pStride, g6, g7, g8, 1);
}

/** Row k of U from row k of G''g (t0, t1, t2) and D_k: (t G''ᵀ)_j / (D_k D_j). */
// @ts-ignore: decorator
@inline function packRow4(d: usize, pStride: usize, t0: v128, t1: v128, t2: v128, dk: f64): void {
  const s = f64x2.add(t0, t2), h = f64x2.add(t1, t1);
  const four = f64x2.splat(4);
  putScaled(d, t0, 1 / dk);
  putScaled(d + pStride, f64x2.add(s, t1), 1 / (dk * D1));
  putScaled(d + 2 * pStride, f64x2.sub(s, t1), 1 / (dk * D2));
  putScaled(d + 3 * pStride, f64x2.add(f64x2.add(t0, f64x2.mul(four, t2)), h), 1 / (dk * D3));
  putScaled(d + 4 * pStride, f64x2.sub(f64x2.add(f64x2.mul(four, t0), t2), h), 1 / (dk * D4));
  putScaled(d + 5 * pStride, t2, 1 / dk);
}

// ---- the convolution -------------------------------------------------------------------------------------

/**
 * Tile rows per unit: as tall as the scratch allows (maxRows), lowered until the units (bands × perRow per
 * image, times batch) come out a multiple of the threads, so none waits on another's last unit. Each unit
 * streams all of U: at 512 channels (U 38 MB) and 32×32 pixels, 8 units of one tile row each (this once
 * asked for 8 units an image) took 1.5× the time of 4 units of two rows, 2 threads. The output does not
 * depend on the split: every tile's sums are the same in any unit.
 */
function bandRows(TH: i32, maxRows: i32, perRow: i32, batch: i32, nt: i32): i32 {
  let bands = (TH + maxRows - 1) / maxRows;
  while (bands < TH && (bands * perRow * batch) % nt != 0) bands++;
  return (TH + bands - 1) / bands;
}

/**
 * Step 2: out = conv3×3(x, w, stride 1, pad 1) + bias (+ res), with the U that winograd4Pack left in the
 * scratch. bias, res: 0 when absent. Threads take units from the atomic counter at `scratch`.
 * np > 0: the pass over phases p0 .. p0 + np - 1 of conv3×3(upsample×2(x)); out is [batch][O][2H][2W]
 * (no residual). np = 0 and up: conv3×3(upsample×2(x)) with x read upsampled while staging its rows (H, W
 * are then the upsampled size), where the phases' U would not fit.
 */
export function winograd4(
  x: usize, bias: usize, res: usize, out: usize, batch: i32, C: i32, H: i32, W: i32, O: i32, up: bool, np: i32,
  p0: i32, scratch: usize, tid: i32, nt: i32,
): void {
  const sh = up && np == 0 ? 1 : 0; // staged upsampling: x is (H/2)×(W/2)
  const Og = np > 0 ? np * O : O;
  const cols = unitCols(C, W);
  const TH = tilesOf(H), TW = tilesOf(W);
  const rows = bandRows(TH, unitRows(C, W), (TW + cols - 1) / cols, batch, nt);
  const perRow = (TW + cols - 1) / cols, perImage = perRow * ((TH + rows - 1) / rows);
  const units = batch * perImage;
  const u = scratch + 16;
  const m = u + <usize>uBytes(Og, C) + <usize>tid * <usize>threadBytes(C, W);
  const tmp = m + <usize>(P * TILE_BYTES);
  const v = tmp + <usize>TMP_BYTES;
  const staging = v + <usize>(P * vStride(unitRows(C, W) * cols / TB, C));
  for (let k = atomic.add<i32>(scratch, 1); k < units; k = atomic.add<i32>(scratch, 1)) {
    const n = k / perImage, r = k - n * perImage;
    const ry = r / perRow, rx = r - ry * perRow;
    const ty0 = ry * rows, ty1 = min(TH, ty0 + rows);
    const tx0 = rx * cols, tx1 = min(TW, tx0 + cols);
    const groupsPerRow = (tx1 - tx0 + TB - 1) / TB;
    const G = (ty1 - ty0) * groupsPerRow;
    const xn = x + (<usize>n * <usize>C * <usize>(H >> sh) * <usize>(W >> sh) << 2);
    transformInput(xn, v, staging, tmp, C, H, W, sh == 1, ty0, ty1, tx0, groupsPerRow, G);
    const plane = <usize>H * <usize>W << (np > 0 ? 4 : 2);
    const on = out + <usize>n * <usize>O * plane;
    const rn = res != 0 ? res + <usize>n * <usize>O * plane : 0;
    unitProduct(u, v, m, tmp, C, H, W, Og, np, p0, G, groupsPerRow, ty0, tx0, tx1, bias, rn, on);
  }
}

/**
 * V_p[g][c][·] = (Bᵀ d B)_p for the unit's tiles: per channel and tile row, the 6 input rows go into staging
 * rows with the padding written out (column 0 is input column 4·tx0 - 1), then 4 tiles at a time are
 * transformed in vector lanes. Tiles past the image see zeros. up: x is (H/2)×(W/2), read upsampled ×2.
 */
function transformInput(
  x: usize, v: usize, staging: usize, tmp: usize, C: i32, H: i32, W: i32, up: bool, ty0: i32, ty1: i32,
  tx0: i32, groupsPerRow: i32, G: i32,
): void {
  const SL = stagingLength(groupsPerRow * TB);
  const slBytes = <usize>SL << 2;
  const pStride = <usize>vStride(G, C);
  const ix0 = 4 * tx0 - 1;
  const lead = max(0, -ix0);
  const first = ix0 + lead;
  const n = max(0, min(W - first, SL - lead));
  const sh = <i32>up, xw = <usize>(W >> sh);
  for (let c = 0; c < C; c++) {
    const xc = x + (<usize>c * <usize>(H >> sh) * xw << 2);
    for (let ty = ty0; ty < ty1; ty++) {
      for (let i = 0; i < 6; i++) {
        const d = staging + <usize>i * slBytes;
        const iy = 4 * ty - 1 + i;
        if (iy < 0 || iy >= H) {
          memory.fill(d, 0, slBytes);
          continue;
        }
        if (lead > 0) store<f32>(d, 0);
        copyRow(d + (<usize>lead << 2), xc + (<usize>(iy >> sh) * xw << 2), first, n, up);
        memory.fill(d + (<usize>(lead + n) << 2), 0, <usize>(SL - lead - n) << 2);
      }
      const gRow0 = (ty - ty0) * groupsPerRow;
      for (let q = 0; q < groupsPerRow * 2; q++) {
        // tiles 4q .. 4q+3 of this row (staging columns 16q ..): group gRow0 + q/2, lanes (q & 1)·4 ..
        const dst = v + (<usize>(gRow0 + (q >> 1)) * <usize>C + <usize>c) * <usize>(TB << 2) + (<usize>(q & 1) << 4);
        transform6(staging + (<usize>(16 * q) << 2), slBytes, dst, pStride, tmp);
      }
    }
  }
}

/** The 1-D input transform: (Bᵀ d)_0..5 stored `stride` bytes apart from `p`. */
// @ts-ignore: decorator
@inline function bt(d0: v128, d1: v128, d2: v128, d3: v128, d4: v128, d5: v128, p: usize, stride: usize): void {
  const half = splat(0.5), one5 = splat(1.5), two = splat(2), two5 = splat(2.5);
  const d13 = f32x4.sub(d1, d3), d42 = f32x4.sub(d4, d2);
  v128.store(p, f32x4.add(f32x4.add(f32x4.sub(d0, f32x4.add(d2, d2)), d4), f32x4.mul(one5, d13)));
  v128.store(p + stride, f32x4.sub(f32x4.sub(f32x4.sub(d4, d1), f32x4.mul(two5, d2)), f32x4.mul(half, d3)));
  v128.store(p + 2 * stride, f32x4.sub(f32x4.add(f32x4.add(d4, d1), f32x4.mul(half, d2)), f32x4.mul(two5, d3)));
  v128.store(p + 3 * stride, f32x4.sub(d42, f32x4.mul(half, d13)));
  v128.store(p + 4 * stride, f32x4.add(d42, f32x4.mul(two, d13)));
  v128.store(p + 5 * stride, f32x4.add(f32x4.sub(f32x4.add(d1, d5), f32x4.add(d3, d3)), f32x4.mul(one5, f32x4.sub(d2, d4))));
}

/**
 * Bᵀ d B for 4 tiles at once (lane t: the patch starting at staging column 4t): each of the 6 rows is
 * transposed out of 5 vector loads into columns d0..d5 and transformed into tmp, then the columns of tmp.
 */
function transform6(src: usize, slBytes: usize, dst: usize, pStride: usize, tmp: usize): void {
  for (let i = 0; i < 6; i++) {
    const s = src + <usize>i * slBytes;
    const a0 = v128.load(s), a1 = v128.load(s, 16), a2 = v128.load(s, 32), a3 = v128.load(s, 48), a4 = v128.load(s, 64);
    const t0 = f32x4.shuffle(a0, a1, 0, 4, 1, 5), t1 = f32x4.shuffle(a0, a1, 2, 6, 3, 7);
    const t2 = f32x4.shuffle(a2, a3, 0, 4, 1, 5), t3 = f32x4.shuffle(a2, a3, 2, 6, 3, 7);
    const d0 = f32x4.shuffle(t0, t2, 0, 1, 4, 5), d1 = f32x4.shuffle(t0, t2, 2, 3, 6, 7);
    const d2 = f32x4.shuffle(t1, t3, 0, 1, 4, 5), d3 = f32x4.shuffle(t1, t3, 2, 3, 6, 7);
    bt(d0, d1, d2, d3, f32x4.shuffle(d0, a4, 1, 2, 3, 4), f32x4.shuffle(d1, a4, 1, 2, 3, 5), tmp + <usize>(96 * i), 16);
  }
  for (let j = 0; j < 6; j++) {
    const t = tmp + <usize>(16 * j);
    bt(
      v128.load(t), v128.load(t, 96), v128.load(t, 192), v128.load(t, 288), v128.load(t, 384), v128.load(t, 480),
      dst + <usize>j * pStride, 6 * pStride,
    );
  }
}

/** a[0..TILE_BYTES) += b[0..TILE_BYTES). */
// @ts-ignore: decorator
@inline function addTile(a: usize, b: usize): void {
  for (let i: usize = 0; i < <usize>TILE_BYTES; i += 16) v128.store(a + i, f32x4.add(v128.load(a + i), v128.load(b + i)));
}

/**
 * The 36 GEMMs of one unit and the output transform, per block of OB output channels and group of TB tiles.
 * Each GEMM sums KC input channels at a time from zero and adds the partial sums: the transformed values are
 * large next to the output (Aᵀ cancels them), and one running sum over 512 channels had 2.5× the error.
 */
function unitProduct(
  u: usize, v: usize, m: usize, tmp: usize, C: i32, H: i32, W: i32, O: i32, np: i32, p0: i32, G: i32,
  groupsPerRow: i32, ty0: i32, tx0: i32, tx1: i32, bias: usize, res: usize, out: usize,
): void {
  const NB = (O + OB - 1) / OB;
  const panelU = <usize>C * <usize>(OB << 2), pStrideU = <usize>uStride(O, C);
  const panelV = <usize>C * <usize>(TB << 2), pStrideV = <usize>vStride(G, C);
  for (let ob = 0; ob < NB; ob++) {
    const ub = u + <usize>ob * panelU;
    for (let g = 0; g < G; g++) {
      const vb = v + <usize>g * panelV;
      for (let p = 0; p < P; p++) {
        const up = ub + <usize>p * pStrideU, vp = vb + <usize>p * pStrideV, mp = m + <usize>(p * TILE_BYTES);
        gemmTile(up, vp, min(C, KC), mp);
        for (let k0 = KC; k0 < C; k0 += KC) {
          gemmTile(up + (<usize>k0 * <usize>(OB << 2)), vp + (<usize>k0 * <usize>(TB << 2)), min(KC, C - k0), tmp);
          addTile(mp, tmp);
        }
      }
      const gy = g / groupsPerRow;
      const txs = tx0 + (g - gy * groupsPerRow) * TB;
      const o0 = ob * OB, nOc = min(OB, O - ob * OB), oy = 4 * (ty0 + gy), ox = 4 * txs, nt = min(TB, tx1 - txs);
      if (np == 0) outputTransform(m, tmp, out, res, bias, H, W, o0, nOc, oy, ox, nt);
      else outputTransformUp(m, tmp, out, bias, H, W, np, p0, o0, nOc, oy, ox, nt);
    }
  }
}

/**
 * Y = Aᵀ m A (+ bias, + residual) for nOc channels from o0 and nt (1..8) tiles whose top-left output pixel is
 * (oy, ox), 4 tiles per vector: columns first (into tmp), then each output row from tmp, transposed so
 * that a vector holds 4 adjacent pixels of one tile.
 */
function outputTransform(
  m: usize, tmp: usize, out: usize, res: usize, bias: usize, H: i32, W: i32, o0: i32, nOc: i32, oy: i32, ox: i32,
  nt: i32,
): void {
  const plane = <usize>H * <usize>W << 2;
  const rowsOut = min(4, H - oy);
  const tv = tmp + 384;
  for (let o = 0; o < nOc; o++) {
    const bv = bias != 0 ? v128.load32_splat(bias + (<usize>(o0 + o) << 2)) : splat(0);
    const chan = <usize>(o0 + o) * plane;
    for (let h = 0; h < 2 && h * 4 < nt; h++) {
      columnPass(m + (<usize>o << 5) + (<usize>h << 4), tmp);
      const px = ox + h * 16;
      const ntH = min(4, nt - 4 * h);
      for (let r = 0; r < rowsOut; r++) {
        rowPass(tmp + <usize>(96 * r), bv, tv);
        const row = chan + ((<usize>(oy + r) * <usize>W + <usize>px) << 2);
        for (let t = 0; t < ntH; t++) {
          const q = row + <usize>(t << 4);
          storeTile(out + q, res != 0 ? res + q : 0, v128.load(tv + <usize>(t << 4)), min(4, W - px - 4 * t));
        }
      }
    }
  }
}

/**
 * outputTransform for a pass of an upsampling conv's phases (see winograd4): GEMM row o0 + l is phase
 * p0 + (o0 + l) % np of channel (o0 + l) / np; its pixel (oy + r, ox + k) goes to (2(oy + r) + a, 2(ox + k) + b)
 * of the 2H×2W output. With np ≥ 2 the rows come in pairs b = 0, 1 (o0 and np even), whose vectors are
 * interleaved into 8 consecutive pixels; np = 1 stores every other pixel.
 */
function outputTransformUp(
  m: usize, tmp: usize, out: usize, bias: usize, H: i32, W: i32, np: i32, p0: i32, o0: i32, nOc: i32, oy: i32,
  ox: i32, nt: i32,
): void {
  const W2 = <usize>(2 * W);
  const plane = <usize>(2 * H) * W2 << 2;
  const rowsOut = min(4, H - oy);
  const pair = np >= 2;
  const tv = tmp + 384, tmp2 = tmp + 512, tv2 = tmp + 896;
  for (let l = 0; l < nOc; l += pair ? 2 : 1) {
    const o = (o0 + l) / np, ph = p0 + (o0 + l) % np;
    const a = ph >> 1, b = ph & 1;
    const bv = bias != 0 ? v128.load32_splat(bias + (<usize>o << 2)) : splat(0);
    const chan = out + <usize>o * plane;
    for (let h = 0; h < 2 && h * 4 < nt; h++) {
      const mh = m + (<usize>l << 5) + (<usize>h << 4);
      columnPass(mh, tmp);
      if (pair) columnPass(mh + 32, tmp2);
      const px = ox + h * 16;
      const ntH = min(4, nt - 4 * h);
      for (let r = 0; r < rowsOut; r++) {
        rowPass(tmp + <usize>(96 * r), bv, tv);
        const row = chan + ((<usize>(2 * (oy + r) + a) * W2 + <usize>(2 * px)) << 2);
        if (pair) {
          rowPass(tmp2 + <usize>(96 * r), bv, tv2);
          for (let t = 0; t < ntH; t++) {
            const y0 = v128.load(tv + <usize>(t << 4)), y1 = v128.load(tv2 + <usize>(t << 4));
            const n = 2 * min(4, W - px - 4 * t);
            const q = row + <usize>(t << 5);
            storePartial(q, f32x4.shuffle(y0, y1, 0, 4, 1, 5), n);
            storePartial(q + 16, f32x4.shuffle(y0, y1, 2, 6, 3, 7), n - 4);
          }
        } else {
          for (let t = 0; t < ntH; t++) {
            const y = v128.load(tv + <usize>(t << 4));
            const n = min(4, W - px - 4 * t);
            const q = row + <usize>((t << 5) + (b << 2));
            v128.store32_lane(q, y, 0);
            if (n > 1) v128.store32_lane(q, y, 1, 8);
            if (n > 2) v128.store32_lane(q, y, 2, 16);
            if (n > 3) v128.store32_lane(q, y, 3, 24);
          }
        }
      }
    }
  }
}

/**
 * The column half of Aᵀ m A for one channel and 4 tiles (lanes), m at its position-0 vector: 4 rows × 6
 * columns into tmp (row r, column j at 96r + 16j).
 */
// @ts-ignore: decorator
@inline function columnPass(a: usize, tmp: usize): void {
  const negHalf = splat(-0.5), quarter = splat(0.25), eighth = splat(0.125), two = splat(2), four = splat(4);
  const eight = splat(8);
  for (let j = 0; j < 6; j++) {
    const c = a + <usize>(j * TILE_BYTES);
    const m0 = v128.load(c), m1 = v128.load(c, 6 * TILE_BYTES), m2 = v128.load(c, 12 * TILE_BYTES);
    const m3 = v128.load(c, 18 * TILE_BYTES), m4 = v128.load(c, 24 * TILE_BYTES), m5 = v128.load(c, 30 * TILE_BYTES);
    const e = f32x4.add(m1, m2), f = f32x4.sub(m1, m2);
    const t = tmp + <usize>(16 * j);
    v128.store(t, f32x4.add(f32x4.add(m0, e), f32x4.add(m3, m4)));
    v128.store(t, f32x4.add(f32x4.add(f, f32x4.mul(two, m3)), f32x4.mul(negHalf, m4)), 96);
    v128.store(t, f32x4.add(f32x4.add(e, f32x4.mul(four, m3)), f32x4.mul(quarter, m4)), 192);
    v128.store(t, f32x4.add(f32x4.sub(f32x4.add(f, f32x4.mul(eight, m3)), f32x4.mul(eighth, m4)), m5), 288);
  }
}

/**
 * One output row of 4 tiles from its 6 column values at t, plus bv, into 4 vectors at dst: vector k holds
 * the row's 4 pixels of tile k (the lanes transposed from tiles to pixels).
 */
// @ts-ignore: decorator
@inline function rowPass(t: usize, bv: v128, dst: usize): void {
  const negHalf = splat(-0.5), quarter = splat(0.25), eighth = splat(0.125), two = splat(2), four = splat(4);
  const eight = splat(8);
  const m0 = v128.load(t), m1 = v128.load(t, 16), m2 = v128.load(t, 32);
  const m3 = v128.load(t, 48), m4 = v128.load(t, 64), m5 = v128.load(t, 80);
  const e = f32x4.add(m1, m2), f = f32x4.sub(m1, m2);
  const y0 = f32x4.add(f32x4.add(f32x4.add(m0, e), f32x4.add(m3, m4)), bv);
  const y1 = f32x4.add(f32x4.add(f32x4.add(f, f32x4.mul(two, m3)), f32x4.mul(negHalf, m4)), bv);
  const y2 = f32x4.add(f32x4.add(f32x4.add(e, f32x4.mul(four, m3)), f32x4.mul(quarter, m4)), bv);
  const y3 = f32x4.add(f32x4.add(f32x4.sub(f32x4.add(f, f32x4.mul(eight, m3)), f32x4.mul(eighth, m4)), m5), bv);
  const s0 = f32x4.shuffle(y0, y1, 0, 4, 1, 5), s1 = f32x4.shuffle(y0, y1, 2, 6, 3, 7);
  const s2 = f32x4.shuffle(y2, y3, 0, 4, 1, 5), s3 = f32x4.shuffle(y2, y3, 2, 6, 3, 7);
  v128.store(dst, f32x4.shuffle(s0, s2, 0, 1, 4, 5));
  v128.store(dst, f32x4.shuffle(s0, s2, 2, 3, 6, 7), 16);
  v128.store(dst, f32x4.shuffle(s1, s3, 0, 1, 4, 5), 32);
  v128.store(dst, f32x4.shuffle(s1, s3, 2, 3, 6, 7), 48);
}

/** The first n (≤ 4; none when n ≤ 0) pixels of y at d, plus the residual at r when given. */
// @ts-ignore: decorator
@inline function storeTile(d: usize, r: usize, y: v128, n: i32): void {
  if (n <= 0) return;
  storePartial(d, r != 0 ? f32x4.add(y, loadPartial(r, n)) : y, n);
}
