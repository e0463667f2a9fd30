// Matrix products on register tiles, used by linear, matmul and attention.
//  * dot form   out[i][j] = Σ_t a[i][t]·b[j][t]  (both operands contiguous along t): 3 rows × 4 columns,
//    12 vector accumulators over t, reduced lane-wise at the end. Linear layers and Q·Kᵀ.
//  * axpy form  out[i][j] = Σ_t a[i][t]·b[t][j]  (b rows contiguous along j): 4 rows × 12 columns,
//    a[i][t] broadcast against three vectors of b's row t. Plain matmul and P·V.
// Partial tiles clamp the row pointers of missing rows/columns to valid ones and skip their stores, so the
// inner loops never branch.
import { hsum4, loadPartial, madd, sliceBegin, splat, storePartial } from "./common";

/**
 * out[i][j] = alpha · Σ_t a[i][t]·b[j][t] + bias[j] for i < nR (≤ 3), j < nC (≤ 4). Strides in bytes.
 * bias = 0 means no bias.
 */
export function dotTile(
  a: usize, lda: usize, b: usize, ldb: usize, K: i32,
  out: usize, ldo: usize, nR: i32, nC: i32, alpha: f32, bias: usize,
): void {
  const a0 = a, a1 = nR > 1 ? a + lda : a, a2 = nR > 2 ? a + 2 * lda : a;
  const b0 = b, b1 = nC > 1 ? b + ldb : b, b2 = nC > 2 ? b + 2 * ldb : b, b3 = nC > 3 ? b + 3 * ldb : b;
  let c00 = splat(0), c01 = splat(0), c02 = splat(0), c03 = splat(0);
  let c10 = splat(0), c11 = splat(0), c12 = splat(0), c13 = splat(0);
  let c20 = splat(0), c21 = splat(0), c22 = splat(0), c23 = splat(0);
  const K4 = K & ~3;
  for (let t = 0; t < K4; t += 4) {
    const o = <usize>t << 2;
    const x0 = v128.load(a0 + o), x1 = v128.load(a1 + o), x2 = v128.load(a2 + o);
    const y0 = v128.load(b0 + o);
    c00 = madd(x0, y0, c00); c10 = madd(x1, y0, c10); c20 = madd(x2, y0, c20);
    const y1 = v128.load(b1 + o);
    c01 = madd(x0, y1, c01); c11 = madd(x1, y1, c11); c21 = madd(x2, y1, c21);
    const y2 = v128.load(b2 + o);
    c02 = madd(x0, y2, c02); c12 = madd(x1, y2, c12); c22 = madd(x2, y2, c22);
    const y3 = v128.load(b3 + o);
    c03 = madd(x0, y3, c03); c13 = madd(x1, y3, c13); c23 = madd(x2, y3, c23);
  }
  if (K4 < K) {
    // the K % 4 tail: partial loads zero the lanes past K on both operands
    const r = K - K4, o = <usize>K4 << 2;
    const x0 = loadPartial(a0 + o, r), x1 = loadPartial(a1 + o, r), x2 = loadPartial(a2 + o, r);
    const y0 = loadPartial(b0 + o, r), y1 = loadPartial(b1 + o, r);
    const y2 = loadPartial(b2 + o, r), y3 = loadPartial(b3 + o, r);
    c00 = madd(x0, y0, c00); c10 = madd(x1, y0, c10); c20 = madd(x2, y0, c20);
    c01 = madd(x0, y1, c01); c11 = madd(x1, y1, c11); c21 = madd(x2, y1, c21);
    c02 = madd(x0, y2, c02); c12 = madd(x1, y2, c12); c22 = madd(x2, y2, c22);
    c03 = madd(x0, y3, c03); c13 = madd(x1, y3, c13); c23 = madd(x2, y3, c23);
  }
  const al = splat(alpha);
  const bv = bias != 0 ? loadPartial(bias, nC) : splat(0);
  storePartial(out, madd(hsum4(c00, c01, c02, c03), al, bv), nC);
  if (nR > 1) storePartial(out + ldo, madd(hsum4(c10, c11, c12, c13), al, bv), nC);
  if (nR > 2) storePartial(out + 2 * ldo, madd(hsum4(c20, c21, c22, c23), al, bv), nC);
}

/**
 * out[i][j] (+)= alpha · Σ_t a[i][t]·b[t][j] for i < nR (≤ 4), j < nC (≤ 12). Strides in bytes.
 * With accumulate, the previous contents of out are added (alpha is then applied to the new part only).
 * Reads b[t][j] for j up to 12 even when nC < 12 (within the guard past the last row).
 */
export function axpyTile(
  a: usize, lda: usize, b: usize, ldb: usize, K: i32,
  out: usize, ldo: usize, nR: i32, nC: i32, alpha: f32, accumulate: bool,
): void {
  const a0 = a, a1 = nR > 1 ? a + lda : a, a2 = nR > 2 ? a + 2 * lda : a, a3 = nR > 3 ? a + 3 * lda : a;
  let c00 = splat(0), c01 = splat(0), c02 = splat(0);
  let c10 = splat(0), c11 = splat(0), c12 = splat(0);
  let c20 = splat(0), c21 = splat(0), c22 = splat(0);
  let c30 = splat(0), c31 = splat(0), c32 = splat(0);
  let pb = b;
  for (let t = 0; t < K; t++) {
    const o = <usize>t << 2;
    const y0 = v128.load(pb), y1 = v128.load(pb, 16), y2 = v128.load(pb, 32);
    const x0 = v128.load32_splat(a0 + o);
    c00 = madd(x0, y0, c00); c01 = madd(x0, y1, c01); c02 = madd(x0, y2, c02);
    const x1 = v128.load32_splat(a1 + o);
    c10 = madd(x1, y0, c10); c11 = madd(x1, y1, c11); c12 = madd(x1, y2, c12);
    const x2 = v128.load32_splat(a2 + o);
    c20 = madd(x2, y0, c20); c21 = madd(x2, y1, c21); c22 = madd(x2, y2, c22);
    const x3 = v128.load32_splat(a3 + o);
    c30 = madd(x3, y0, c30); c31 = madd(x3, y1, c31); c32 = madd(x3, y2, c32);
    pb += ldb;
  }
  const al = splat(alpha);
  storeRow3(out, c00, c01, c02, al, nC, accumulate);
  if (nR > 1) storeRow3(out + ldo, c10, c11, c12, al, nC, accumulate);
  if (nR > 2) storeRow3(out + 2 * ldo, c20, c21, c22, al, nC, accumulate);
  if (nR > 3) storeRow3(out + 3 * ldo, c30, c31, c32, al, nC, accumulate);
}

// @ts-ignore: decorator
@inline function storeRow3(p: usize, v0: v128, v1: v128, v2: v128, al: v128, n: i32, accumulate: bool): void {
  storeAcc(p, v0, al, n, accumulate);
  if (n > 4) storeAcc(p + 16, v1, al, n - 4, accumulate);
  if (n > 8) storeAcc(p + 32, v2, al, n - 8, accumulate);
}

// @ts-ignore: decorator
@inline function storeAcc(p: usize, v: v128, al: v128, n: i32, accumulate: bool): void {
  const base = accumulate ? loadPartial(p, n) : splat(0);
  storePartial(p, madd(v, al, base), n);
}

/** out[i][0..N) = alpha · a[i] · b (+ previous out) for rows i < nR (≤ 4), all N columns, axpy form. */
export function axpyRows(
  a: usize, lda: usize, b: usize, ldb: usize, K: i32, N: i32,
  out: usize, ldo: usize, nR: i32, alpha: f32, accumulate: bool,
): void {
  for (let j = 0; j < N; j += 12) {
    const o = <usize>j << 2;
    axpyTile(a, lda, b + o, ldb, K, out + o, ldo, nR, min(12, N - j), alpha, accumulate);
  }
}

/** out[rows][outF] = x[rows][inF] · weightᵀ + bias (weight: [outF][inF], PyTorch layout). */
export function linear(
  x: usize, weight: usize, bias: usize, out: usize, rows: i32, inF: i32, outF: i32, tid: i32, nt: i32,
): void {
  const rb = (rows + 2) / 3;
  const r0 = sliceBegin(rb, tid, nt) * 3, r1 = min(sliceBegin(rb, tid + 1, nt) * 3, rows);
  const lda = <usize>inF << 2, ldo = <usize>outF << 2;
  for (let i = r0; i < r1; i += 3) {
    const nR = min(3, r1 - i);
    for (let j = 0; j < outF; j += 4) {
      dotTile(x + <usize>i * lda, lda, weight + <usize>j * lda, lda, inF,
        out + <usize>i * ldo + (<usize>j << 2), ldo, nR, min(4, outF - j), 1.0, bias != 0 ? bias + (<usize>j << 2) : 0);
    }
  }
}

/** out[batch][m][n] = alpha · a[batch][m][k] · b, b: [batch][k][n], or [batch][n][k] with transposeB. */
export function matmul(
  a: usize, b: usize, out: usize, batch: i32, m: i32, n: i32, k: i32, transposeB: bool, alpha: f32,
  tid: i32, nt: i32,
): void {
  const tileRows = transposeB ? 3 : 4;
  const rb = (m + tileRows - 1) / tileRows;
  const total = batch * rb;
  const t0 = sliceBegin(total, tid, nt), t1 = sliceBegin(total, tid + 1, nt);
  const lda = <usize>k << 2, ldo = <usize>n << 2;
  for (let t = t0; t < t1; t++) {
    const bt = t / rb, i = (t - bt * rb) * tileRows;
    const nR = min(tileRows, m - i);
    const pa = a + (<usize>bt * <usize>m + <usize>i) * lda;
    const pb = b + (<usize>bt * <usize>k * <usize>n << 2);
    const po = out + (<usize>bt * <usize>m + <usize>i) * ldo;
    if (transposeB) {
      for (let j = 0; j < n; j += 4) {
        dotTile(pa, lda, pb + <usize>j * lda, lda, k, po + (<usize>j << 2), ldo, nR, min(4, n - j), alpha, 0);
      }
    } else {
      axpyRows(pa, lda, pb, ldo, k, n, po, ldo, nR, alpha, false);
    }
  }
}
