// Matrix products on packed panels, used by linear, matmul and attention.
//
// out[i][j] = Σ_k A[i][k]·B[k][j]. A is packed in panels of MR = 6 rows as [K][6], B in tiles of NR = 8
// columns as [K][8] (zero past the valid rows/columns), so the micro-kernel reads both with one pointer
// each and immediate offsets: per k, 2 vector loads of B, 6 broadcasts of A, 12 multiply-adds into 12
// accumulators (the same spill-free shape as the conv micro-kernel, see conv.ts). Packing costs O(K·(M+N))
// against O(M·N·K) multiply-adds. B may be stored row-major [K][N] or transposed [N][K] (linear weights,
// Kᵀ in attention); packing absorbs the difference.
import { loadPartial, madd, sliceBegin, splat, storePartial } from "./common";
import { loadWeight } from "./half";

/** Rows per A panel and columns per B tile. */
export const MR = 6;
export const NR = 8;
/** One tile of raw accumulators, [MR][NR] floats. */
export const TILE_BYTES = MR * NR * 4;

/** Bytes of packed B for a K × N product: ceil(N/8) tiles of [K][8]. */
// @ts-ignore: decorator
@inline export function packedBBytes(K: i32, N: i32): i32 {
  return ((N + NR - 1) / NR) * K * (NR << 2);
}

/** dst[k][r] = A[r][k] for r < rows (≤ 6), 0 for the other rows. lda: bytes between rows of A. */
export function packA(a: usize, lda: usize, rows: i32, K: i32, dst: usize): void {
  for (let r = 0; r < MR; r++) {
    let p = dst + (<usize>r << 2);
    if (r < rows) {
      const src = a + <usize>r * lda;
      for (let k = 0; k < K; k++) {
        store<f32>(p, load<f32>(src + (<usize>k << 2)));
        p += MR << 2;
      }
    } else {
      for (let k = 0; k < K; k++) {
        store<f32>(p, 0);
        p += MR << 2;
      }
    }
  }
}

/**
 * Packs all of B (K × N) into tiles [N/8][K][8], zero past N. transposed: B[k][j] is stored at b + j·ldb
 * + 4k (B given as Bᵀ, rows of length K); otherwise at b + k·ldb + 4j. half (transposed only: linear
 * weights): Bᵀ holds f16 bits (at b + j·ldb + 2k), widened exactly one value at a time.
 */
export function packB(b: usize, ldb: usize, K: i32, N: i32, transposed: bool, half: bool, dst: usize): void {
  const tile = <usize>K * (NR << 2);
  for (let j = 0; j < N; j += NR) {
    const cols = min(NR, N - j);
    const d = dst + <usize>(j / NR) * tile;
    if (transposed && cols == NR && !half) {
      // 4×4 register transposes: rows j..j+3 of Bᵀ at k..k+3 become B[k..k+3][j..j+3]
      const K4 = K & ~3;
      for (let h = 0; h < NR; h += 4) {
        const r0 = b + <usize>(j + h) * ldb;
        for (let k = 0; k < K4; k += 4) {
          const o = <usize>k << 2;
          const a0 = v128.load(r0 + o), a1 = v128.load(r0 + ldb + o);
          const a2 = v128.load(r0 + 2 * ldb + o), a3 = v128.load(r0 + 3 * ldb + o);
          const t0 = f32x4.shuffle(a0, a1, 0, 4, 1, 5), t1 = f32x4.shuffle(a0, a1, 2, 6, 3, 7);
          const t2 = f32x4.shuffle(a2, a3, 0, 4, 1, 5), t3 = f32x4.shuffle(a2, a3, 2, 6, 3, 7);
          const p = d + (<usize>k << 5) + (<usize>h << 2);
          v128.store(p, f32x4.shuffle(t0, t2, 0, 1, 4, 5));
          v128.store(p, f32x4.shuffle(t0, t2, 2, 3, 6, 7), 32);
          v128.store(p, f32x4.shuffle(t1, t3, 0, 1, 4, 5), 64);
          v128.store(p, f32x4.shuffle(t1, t3, 2, 3, 6, 7), 96);
        }
        for (let k = K4; k < K; k++) {
          const p = d + (<usize>k << 5) + (<usize>h << 2);
          for (let c = 0; c < 4; c++) store<f32>(p + (<usize>c << 2), load<f32>(r0 + <usize>c * ldb + (<usize>k << 2)));
        }
      }
    } else if (transposed) {
      for (let c = 0; c < NR; c++) {
        let p = d + (<usize>c << 2);
        if (c < cols) {
          const src = b + <usize>(j + c) * ldb;
          for (let k = 0; k < K; k++) {
            store<f32>(p, loadWeight(src, <usize>k, half));
            p += NR << 2;
          }
        } else {
          for (let k = 0; k < K; k++) {
            store<f32>(p, 0);
            p += NR << 2;
          }
        }
      }
    } else if (cols == NR) {
      for (let k = 0; k < K; k++) {
        const src = b + <usize>k * ldb + (<usize>j << 2);
        const p = d + (<usize>k << 5);
        v128.store(p, v128.load(src));
        v128.store(p, v128.load(src, 16), 16);
      }
    } else {
      for (let k = 0; k < K; k++) {
        const src = b + <usize>k * ldb + (<usize>j << 2);
        const p = d + (<usize>k << 5);
        for (let c = 0; c < NR; c++) store<f32>(p + (<usize>c << 2), c < cols ? load<f32>(src + (<usize>c << 2)) : <f32>0);
      }
    }
  }
}

/**
 * The micro-kernel, shared with winograd.ts (same 6×8 panel layout): acc[r][0..8) = Σ_k ap[k][r] · bp[k][0..8), raw. Kept bare and out of line (see
 * panelTimesB) so V8 allocates all 12 accumulators to registers; they are stored in the order they are
 * computed, which keeps V8's scheduler from hoisting the loads and spilling.
 */
export function gemmTile(ap: usize, bp: usize, K: i32, acc: usize): void {
  let c00 = splat(0), c01 = splat(0), c10 = splat(0), c11 = splat(0), c20 = splat(0), c21 = splat(0);
  let c30 = splat(0), c31 = splat(0), c40 = splat(0), c41 = splat(0), c50 = splat(0), c51 = splat(0);
  let pa = ap, pb = bp;
  for (let k = 0; k < K; k++) {
    const x0 = v128.load(pb);
    const x1 = v128.load(pb, 16);
    const w0 = v128.load32_splat(pa);
    c00 = madd(w0, x0, c00);
    c01 = madd(w0, x1, c01);
    const w1 = v128.load32_splat(pa, 4);
    c10 = madd(w1, x0, c10);
    c11 = madd(w1, x1, c11);
    const w2 = v128.load32_splat(pa, 8);
    c20 = madd(w2, x0, c20);
    c21 = madd(w2, x1, c21);
    const w3 = v128.load32_splat(pa, 12);
    c30 = madd(w3, x0, c30);
    c31 = madd(w3, x1, c31);
    const w4 = v128.load32_splat(pa, 16);
    c40 = madd(w4, x0, c40);
    c41 = madd(w4, x1, c41);
    const w5 = v128.load32_splat(pa, 20);
    c50 = madd(w5, x0, c50);
    c51 = madd(w5, x1, c51);
    pa += MR << 2;
    pb += NR << 2;
  }
  v128.store(acc, c00, 0);
  v128.store(acc, c01, 16);
  v128.store(acc, c10, 32);
  v128.store(acc, c11, 48);
  v128.store(acc, c20, 64);
  v128.store(acc, c21, 80);
  v128.store(acc, c30, 96);
  v128.store(acc, c31, 112);
  v128.store(acc, c40, 128);
  v128.store(acc, c41, 144);
  v128.store(acc, c50, 160);
  v128.store(acc, c51, 176);
}

/**
 * out[r][j] = alpha · acc[r][j] + (bias[j] | out[r][j] when accumulating | 0) for r < nR, j < nC.
 * ldo: bytes between rows of out.
 */
function finishTile(acc: usize, out: usize, ldo: usize, nR: i32, nC: i32, alpha: f32, bias: usize, accumulate: bool): void {
  const al = splat(alpha);
  const b0 = bias != 0 ? loadPartial(bias, nC) : splat(0);
  const b1 = bias != 0 && nC > 4 ? loadPartial(bias + 16, nC - 4) : splat(0);
  for (let r = 0; r < nR; r++) {
    const a = acc + (<usize>r << 5), o = out + <usize>r * ldo;
    const base0 = accumulate ? loadPartial(o, nC) : b0;
    storePartial(o, madd(v128.load(a), al, base0), nC);
    if (nC > 4) {
      const base1 = accumulate ? loadPartial(o + 16, nC - 4) : b1;
      storePartial(o + 16, madd(v128.load(a, 16), al, base1), nC - 4);
    }
  }
}

/**
 * out[0..nR)[0..N) (+)= alpha · (one packed A panel) × (packed B) (+ bias), K deep. acc: a TILE_BYTES
 * scratch. The tile loop is unrolled by two so that gemmTile has two call sites: binaryen inlines
 * single-caller functions, and inlined into a bigger function its loop lost its register allocation.
 */
export function panelTimesB(
  ap: usize, bp: usize, K: i32, N: i32, acc: usize, out: usize, ldo: usize, nR: i32, alpha: f32, bias: usize,
  accumulate: bool,
): void {
  const tile = <usize>K * (NR << 2);
  let j = 0;
  for (; j + 2 * NR <= N; j += 2 * NR) {
    const t = bp + <usize>(j / NR) * tile;
    gemmTile(ap, t, K, acc);
    finishTile(acc, out + (<usize>j << 2), ldo, nR, NR, alpha, bias != 0 ? bias + (<usize>j << 2) : 0, accumulate);
    gemmTile(ap, t + tile, K, acc);
    finishTile(acc, out + (<usize>(j + NR) << 2), ldo, nR, NR, alpha, bias != 0 ? bias + (<usize>(j + NR) << 2) : 0, accumulate);
  }
  for (; j < N; j += NR) {
    gemmTile(ap, bp + <usize>(j / NR) * tile, K, acc);
    finishTile(acc, out + (<usize>j << 2), ldo, nR, min(NR, N - j), alpha, bias != 0 ? bias + (<usize>j << 2) : 0, accumulate);
  }
}

/** Scratch bytes one thread needs for matmul / linear with these n, k. */
export function matmulScratchBytes(n: i32, k: i32): i32 {
  return TILE_BYTES + packedBBytes(k, n) + k * (MR << 2);
}

/**
 * out[bt] = alpha · a[bt] · b[bt] (+ bias), a: [m][k]; b: [k][n], or [n][k] when transposeB; bStride:
 * floats between batches of b (0: shared, as for linear weights). Threads split (batch, 6-row panel)
 * pairs; thread tid uses scratch + tid · matmulScratchBytes(n, k).
 */
function gemm(
  a: usize, b: usize, bHalf: bool, bias: usize, out: usize, batch: i32, m: i32, n: i32, k: i32, transposeB: bool,
  bStride: i32, alpha: f32, scratch: usize, tid: i32, nt: i32,
): void {
  const sb = scratch + <usize>tid * <usize>matmulScratchBytes(n, k);
  const acc = sb, bp = sb + TILE_BYTES, ap = bp + packedBBytes(k, n);
  const panels = (m + MR - 1) / MR;
  const t0 = sliceBegin(batch * panels, tid, nt), t1 = sliceBegin(batch * panels, tid + 1, nt);
  const lda = <usize>k << 2, ldo = <usize>n << 2;
  const ldb = <usize>(transposeB ? k : n) << (bHalf ? 1 : 2);
  let packedFor = -1;
  for (let t = t0; t < t1; t++) {
    const bt = t / panels, i = (t - bt * panels) * MR;
    if (bt != packedFor && (packedFor < 0 || bStride != 0)) {
      packB(b + (<usize>bt * <usize>bStride << 2), ldb, k, n, transposeB, bHalf, bp);
      packedFor = bt;
    }
    const nR = min(MR, m - i);
    packA(a + (<usize>bt * <usize>m + <usize>i) * lda, lda, nR, k, ap);
    panelTimesB(ap, bp, k, n, acc, out + (<usize>bt * <usize>m + <usize>i) * ldo, ldo, nR, alpha, bias, false);
  }
}

/** out[rows][outF] = x[rows][inF] · weightᵀ + bias (weight: [outF][inF], PyTorch layout; f16 bits with wHalf). */
export function linear(
  x: usize, weight: usize, wHalf: bool, bias: usize, out: usize, rows: i32, inF: i32, outF: i32, scratch: usize,
  tid: i32, nt: i32,
): void {
  gemm(x, weight, wHalf, bias, out, 1, rows, outF, inF, true, 0, 1.0, scratch, tid, nt);
}

/** out[batch][m][n] = alpha · a[batch][m][k] · b, b: [batch][k][n], or [batch][n][k] with transposeB. */
export function matmul(
  a: usize, b: usize, out: usize, batch: i32, m: i32, n: i32, k: i32, transposeB: bool, alpha: f32,
  scratch: usize, tid: i32, nt: i32,
): void {
  gemm(a, b, false, 0, out, batch, m, n, k, transposeB, n * k, alpha, scratch, tid, nt);
}
