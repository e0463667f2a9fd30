// Group normalisation with the activation fused into the write pass.
import { hsum, loadPartial, madd, sliceBegin, splat, storePartial, vact } from "./common";

// Statistics are two-pass (mean, then squared deviations). Each pass sums blocks of BLOCK floats in f32
// (16 lanes, so a lane adds at most BLOCK/16 values) and adds the block sums in f64: a group can hold
// millions of values (4 channels x 512 x 512) and a plain f32 running sum would drift.
const BLOCK = 1024;

function sumBlocked(p: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i < n) {
    const end = min(i + BLOCK, n);
    let a0 = splat(0), a1 = splat(0), a2 = splat(0), a3 = splat(0);
    for (; i + 16 <= end; i += 16) {
      const q = p + (<usize>i << 2);
      a0 = f32x4.add(a0, v128.load(q));
      a1 = f32x4.add(a1, v128.load(q, 16));
      a2 = f32x4.add(a2, v128.load(q, 32));
      a3 = f32x4.add(a3, v128.load(q, 48));
    }
    for (; i < end; i += 4) a0 = f32x4.add(a0, loadPartial(p + (<usize>i << 2), end - i));
    i = end;
    total += <f64>hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  }
  return total;
}

function sqDevBlocked(p: usize, n: i32, mean: f32): f64 {
  const m = splat(mean);
  let total: f64 = 0;
  let i = 0;
  while (i < n) {
    const end = min(i + BLOCK, n);
    let a0 = splat(0), a1 = splat(0), a2 = splat(0), a3 = splat(0);
    for (; i + 16 <= end; i += 16) {
      const q = p + (<usize>i << 2);
      const d0 = f32x4.sub(v128.load(q), m), d1 = f32x4.sub(v128.load(q, 16), m);
      const d2 = f32x4.sub(v128.load(q, 32), m), d3 = f32x4.sub(v128.load(q, 48), m);
      a0 = madd(d0, d0, a0);
      a1 = madd(d1, d1, a1);
      a2 = madd(d2, d2, a2);
      a3 = madd(d3, d3, a3);
    }
    for (; i < end; i += 4) {
      const k = end - i;
      // zero the lanes past the end: (0 - mean)^2 must not count
      const d = v128.and(f32x4.sub(loadPartial(p + (<usize>i << 2), k), m), lanesBelow(k));
      a0 = madd(d, d, a0);
    }
    i = end;
    total += <f64>hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  }
  return total;
}

/** Mask with all bits set in lanes 0..k-1. */
// @ts-ignore: decorator
@inline function lanesBelow(k: i32): v128 {
  return i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(k));
}

/**
 * x, out: [batch, channels, spatial]; out may alias x. Threads split the (batch, group) pairs.
 * out = act((x - mean) * (gamma * invStd) + beta).
 */
export function groupNorm(
  x: usize, gamma: usize, beta: usize, out: usize,
  batch: i32, channels: i32, spatial: i32, groups: i32, eps: f32, act: i32,
  tid: i32, nt: i32,
): void {
  const cpg = channels / groups;
  const span = cpg * spatial;
  const total = batch * groups;
  const g0 = sliceBegin(total, tid, nt), g1 = sliceBegin(total, tid + 1, nt);
  for (let t = g0; t < g1; t++) {
    const n = t / groups, g = t - n * groups;
    const off = (<usize>n * <usize>channels + <usize>g * <usize>cpg) * <usize>spatial << 2;
    const src = x + off, dst = out + off;
    const mean = sumBlocked(src, span) / <f64>span;
    const variance = sqDevBlocked(src, span, <f32>mean) / <f64>span;
    const inv = 1.0 / Math.sqrt(variance + <f64>eps);
    const m = splat(<f32>mean);
    for (let c = 0; c < cpg; c++) {
      const ch = g * cpg + c;
      const s = splat(<f32>(<f64>load<f32>(gamma + (<usize>ch << 2)) * inv));
      const b = splat(load<f32>(beta + (<usize>ch << 2)));
      const ps = src + (<usize>c * <usize>spatial << 2), pd = dst + (<usize>c * <usize>spatial << 2);
      let i = 0;
      for (; i + 8 <= spatial; i += 8) {
        const o = <usize>i << 2;
        const v0 = vact(madd(f32x4.sub(v128.load(ps + o), m), s, b), act);
        const v1 = vact(madd(f32x4.sub(v128.load(ps + o, 16), m), s, b), act);
        v128.store(pd + o, v0);
        v128.store(pd + o, v1, 16);
      }
      for (; i < spatial; i += 4) {
        const o = <usize>i << 2;
        const k = spatial - i;
        storePartial(pd + o, vact(madd(f32x4.sub(loadPartial(ps + o, k), m), s, b), act), k);
      }
    }
  }
}
