// Softmax and blocked attention with an online softmax (the N×N score matrix never exists: only one
// BQ × BK block of it, in the caller's scratch).
import { hmax, hsum, loadPartial, sliceBegin, splat, storePartial, vexp, vexpSat } from "./common";
import { MR, NR, TILE_BYTES, packA, packB, packedBBytes, panelTimesB } from "./gemm";

/** Row-wise softmax of x[rows][cols] in f32 with max subtraction; out may alias x. Threads split rows. */
export function softmax(x: usize, out: usize, rows: i32, cols: i32, tid: i32, nt: i32): void {
  const r0 = sliceBegin(rows, tid, nt), r1 = sliceBegin(rows, tid + 1, nt);
  for (let r = r0; r < r1; r++) {
    const off = <usize>r * <usize>cols << 2;
    softmaxRow(x + off, out + off, cols);
  }
}

/** out = exp(x - max) / Σ exp(x - max) over n floats (out may alias x). */
function softmaxRow(x: usize, out: usize, n: i32): void {
  let mv = splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize>i << 2)));
  let mx = hmax(mv);
  for (; i < n; i++) mx = max(mx, load<f32>(x + (<usize>i << 2)));
  const m = splat(mx);
  let s0 = splat(0), s1 = splat(0);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    // saturating exp: a -inf logit (a mask) gives exactly 0
    const e0 = vexpSat(f32x4.sub(v128.load(x + o), m)), e1 = vexpSat(f32x4.sub(v128.load(x + o, 16), m));
    v128.store(out + o, e0);
    v128.store(out + o, e1, 16);
    s0 = f32x4.add(s0, e0);
    s1 = f32x4.add(s1, e1);
  }
  let sum = hsum(f32x4.add(s0, s1));
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const e = f32x4.extract_lane(vexpSat(splat(load<f32>(x + o) - mx)), 0);
    store<f32>(out + o, e);
    sum += e;
  }
  scaleRow(out, n, <f32>1 / sum);
}

function scaleRow(p: usize, n: i32, s: f32): void {
  const sv = splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(p + o, f32x4.mul(v128.load(p + o), sv));
  }
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), load<f32>(p + (<usize>i << 2)) * s);
}

/** Query rows per block (a multiple of MR) and keys per block (a multiple of NR). */
const BQ = 8 * MR;
const BK = 16 * NR;

/**
 * Scratch bytes one thread needs for attention with head dimension `dim`; the whole scratch is a 16-byte
 * header (the work counter, zeroed by the caller) and then nt of these.
 */
export function attentionScratchBytes(dim: i32): i32 {
  return TILE_BYTES +
    (BQ / MR) * dim * (MR << 2) + // Q panels
    packedBBytes(dim, BK) + // Kᵀ block
    packedBBytes(BK, dim) + // V block
    BK * (MR << 2) + // one P panel
    ((BQ * BK + BQ * dim + 2 * BQ) << 2); // S, O, running max and sum
}

/**
 * out[b][i] = Σ_j softmax_j(scale · q[b][i]·k[b][j]) v[b][j]. Per block of BQ queries: S = scale·Q·Kᵀ for
 * one block of BK keys, rescale what was accumulated under the previous running max, O += P·V. Threads
 * take (batch, query block) pairs from the atomic counter at `scratch` (as conv.ts does), so a thread that
 * is descheduled or slower does not leave the others idle at the end of a long call (16k tokens at
 * 1024²: seconds); a block's result does not depend on which thread computes it. Thread tid uses
 * scratch + 16 + tid · attentionScratchBytes(dim).
 */
export function attention(
  q: usize, k: usize, v: usize, out: usize, batch: i32, NQ: i32, NK: i32, D: i32, scale: f32,
  scratch: usize, tid: i32, nt: i32,
): void {
  const base = scratch + 16 + <usize>tid * <usize>attentionScratchBytes(D);
  const acc = base;
  const Qp = acc + TILE_BYTES;
  const Kp = Qp + <usize>((BQ / MR) * D * (MR << 2));
  const Vp = Kp + <usize>packedBBytes(D, BK);
  const Pp = Vp + <usize>packedBBytes(BK, D);
  const S = Pp + <usize>(BK * (MR << 2)); // [BQ][BK]
  const O = S + (<usize>(BQ * BK) << 2); // [BQ][D]
  const M = O + (<usize>(BQ * D) << 2);
  const L = M + (<usize>BQ << 2);
  const ld = <usize>D << 2, ldS = <usize>BK << 2;
  const qPanel = <usize>D * (MR << 2);
  const qb = (NQ + BQ - 1) / BQ;
  const total = batch * qb;
  for (let t = atomic.add<i32>(scratch, 1); t < total; t = atomic.add<i32>(scratch, 1)) {
    const b = t / qb, i0 = (t - b * qb) * BQ;
    const nq = min(BQ, NQ - i0);
    const pq = q + (<usize>b * <usize>NQ + <usize>i0) * ld;
    const pk = k + <usize>b * <usize>NK * ld, pv = v + <usize>b * <usize>NK * ld;
    for (let i = 0; i < nq; i += MR) packA(pq + <usize>i * ld, ld, min(MR, nq - i), D, Qp + <usize>(i / MR) * qPanel);
    memory.fill(O, 0, <usize>(BQ * D) << 2);
    for (let i = 0; i < nq; i++) {
      store<f32>(M + (<usize>i << 2), -Infinity);
      store<f32>(L + (<usize>i << 2), 0);
    }
    for (let j0 = 0; j0 < NK; j0 += BK) {
      const nk = min(BK, NK - j0);
      // S = scale · Q Kᵀ for this block of keys (B = Kᵀ: key rows are B's columns)
      packB(pk + <usize>j0 * ld, ld, D, nk, true, false, Kp);
      for (let i = 0; i < nq; i += MR) {
        panelTimesB(Qp + <usize>(i / MR) * qPanel, Kp, D, nk, acc, S + <usize>i * ldS, ldS, min(MR, nq - i), scale, 0, false);
      }
      // online softmax: P = exp(S - new max); rescale O and the running sum by exp(old max - new max)
      for (let i = 0; i < nq; i++) {
        const row = S + <usize>i * ldS;
        let mv = splat(-Infinity);
        let j = 0;
        for (; j + 4 <= nk; j += 4) mv = f32x4.pmax(mv, v128.load(row + (<usize>j << 2)));
        let mx = hmax(mv);
        for (; j < nk; j++) mx = max(mx, load<f32>(row + (<usize>j << 2)));
        const mOld = load<f32>(M + (<usize>i << 2));
        const mNew = max(mOld, mx);
        const m = splat(mNew);
        let s = splat(0);
        j = 0;
        for (; j < nk; j += 4) {
          const o = <usize>j << 2;
          const e = vexp(f32x4.sub(loadPartial(row + o, nk - j), m));
          // lanes past nk are zero before exp and must not count
          const kept = j + 4 <= nk ? e : v128.and(e, i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(nk - j)));
          storePartial(row + o, kept, nk - j);
          s = f32x4.add(s, kept);
        }
        const corr = mOld == -Infinity ? <f32>0 : f32x4.extract_lane(vexp(splat(mOld - mNew)), 0);
        store<f32>(L + (<usize>i << 2), load<f32>(L + (<usize>i << 2)) * corr + hsum(s));
        store<f32>(M + (<usize>i << 2), mNew);
        if (corr != 1) scaleRow(O + <usize>i * ld, D, corr);
      }
      // O += P V
      packB(pv + <usize>j0 * ld, ld, nk, D, false, false, Vp);
      for (let i = 0; i < nq; i += MR) {
        const nR = min(MR, nq - i);
        packA(S + <usize>i * ldS, ldS, nR, nk, Pp);
        panelTimesB(Pp, Vp, nk, D, acc, O + <usize>i * ld, ld, nR, 1.0, 0, true);
      }
    }
    for (let i = 0; i < nq; i++) {
      const src = O + <usize>i * ld, dst = out + (<usize>b * <usize>NQ + <usize>(i0 + i)) * ld;
      const inv = <f32>1.0 / load<f32>(L + (<usize>i << 2));
      const s = splat(inv);
      let c = 0;
      for (; c + 4 <= D; c += 4) v128.store(dst + (<usize>c << 2), f32x4.mul(v128.load(src + (<usize>c << 2)), s));
      for (; c < D; c++) store<f32>(dst + (<usize>c << 2), load<f32>(src + (<usize>c << 2)) * inv);
    }
  }
}
