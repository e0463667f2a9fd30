// Memory-bound kernels: add, activation, nearest 2x upsampling, batched transpose.
import { loadPartial, sliceBegin, storePartial, vact } from "./common";

/** Thread share of a flat range, in whole 16-float blocks so threads never write the same cache line. */
// @ts-ignore: decorator
@inline function blockBegin(length: i32, tid: i32, nt: i32): i32 {
  return min(sliceBegin((length + 15) >> 4, tid, nt) << 4, length);
}

/** out = a + b over `length` floats; out may alias a or b. */
export function add(a: usize, b: usize, out: usize, length: i32, tid: i32, nt: i32): void {
  const i0 = blockBegin(length, tid, nt), i1 = blockBegin(length, tid + 1, nt);
  let i = i0;
  for (; i + 16 <= i1; i += 16) {
    const o = <usize>i << 2;
    const s0 = f32x4.add(v128.load(a + o), v128.load(b + o));
    const s1 = f32x4.add(v128.load(a + o, 16), v128.load(b + o, 16));
    const s2 = f32x4.add(v128.load(a + o, 32), v128.load(b + o, 32));
    const s3 = f32x4.add(v128.load(a + o, 48), v128.load(b + o, 48));
    v128.store(out + o, s0);
    v128.store(out + o, s1, 16);
    v128.store(out + o, s2, 32);
    v128.store(out + o, s3, 48);
  }
  for (; i < i1; i += 4) {
    const o = <usize>i << 2;
    storePartial(out + o, f32x4.add(loadPartial(a + o, i1 - i), loadPartial(b + o, i1 - i)), i1 - i);
  }
}

/** out = act(x) over `length` floats; out may alias x. */
export function activation(x: usize, out: usize, length: i32, act: i32, tid: i32, nt: i32): void {
  const i0 = blockBegin(length, tid, nt), i1 = blockBegin(length, tid + 1, nt);
  let i = i0;
  for (; i + 8 <= i1; i += 8) {
    const o = <usize>i << 2;
    const v0 = vact(v128.load(x + o), act);
    const v1 = vact(v128.load(x + o, 16), act);
    v128.store(out + o, v0);
    v128.store(out + o, v1, 16);
  }
  for (; i < i1; i += 4) {
    const o = <usize>i << 2;
    storePartial(out + o, vact(loadPartial(x + o, i1 - i), act), i1 - i);
  }
}

/** [planes, H, W] -> [planes, 2H, 2W], nearest neighbour. Threads split the input rows. */
export function upsampleNearest2x(x: usize, out: usize, planes: i32, H: i32, W: i32, tid: i32, nt: i32): void {
  const rows = planes * H;
  const r0 = sliceBegin(rows, tid, nt), r1 = sliceBegin(rows, tid + 1, nt);
  const inRow = <usize>W << 2, outRow = <usize>W << 3;
  for (let r = r0; r < r1; r++) {
    const src = x + <usize>r * inRow;
    const dst = out + <usize>r * (outRow << 1); // input row r -> output rows 2r, 2r + 1
    let j = 0;
    for (; j + 4 <= W; j += 4) {
      const v = v128.load(src + (<usize>j << 2));
      const lo = f32x4.shuffle(v, v, 0, 0, 1, 1);
      const hi = f32x4.shuffle(v, v, 2, 2, 3, 3);
      const d = dst + (<usize>j << 3);
      v128.store(d, lo);
      v128.store(d, hi, 16);
      v128.store(d + outRow, lo);
      v128.store(d + outRow, hi, 16);
    }
    for (; j < W; j++) {
      const v = load<f32>(src + (<usize>j << 2));
      const d = dst + (<usize>j << 3);
      store<f32>(d, v);
      store<f32>(d, v, 4);
      store<f32>(d + outRow, v);
      store<f32>(d + outRow, v, 4);
    }
  }
}

/** [batch, rows, cols] -> [batch, cols, rows] in 4x4 register tiles. Threads split the row blocks. */
export function transpose(x: usize, out: usize, batch: i32, rows: i32, cols: i32, tid: i32, nt: i32): void {
  const rb = (rows + 3) >> 2;
  const total = batch * rb;
  const t0 = sliceBegin(total, tid, nt), t1 = sliceBegin(total, tid + 1, nt);
  const plane = <usize>rows * <usize>cols << 2;
  const xs = <usize>cols << 2, os = <usize>rows << 2;
  for (let t = t0; t < t1; t++) {
    const b = t / rb, r = (t - b * rb) << 2;
    const src = x + <usize>b * plane, dst = out + <usize>b * plane;
    if (r + 4 <= rows) {
      const s = src + <usize>r * xs;
      let c = 0;
      for (; c + 4 <= cols; c += 4) {
        const p = s + (<usize>c << 2);
        const a0 = v128.load(p), a1 = v128.load(p + xs), a2 = v128.load(p + 2 * xs), a3 = v128.load(p + 3 * xs);
        const t0 = f32x4.shuffle(a0, a1, 0, 4, 1, 5), t1 = f32x4.shuffle(a0, a1, 2, 6, 3, 7);
        const t2 = f32x4.shuffle(a2, a3, 0, 4, 1, 5), t3 = f32x4.shuffle(a2, a3, 2, 6, 3, 7);
        const d = dst + <usize>c * os + (<usize>r << 2);
        v128.store(d, f32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(d + os, f32x4.shuffle(t0, t2, 2, 3, 6, 7));
        v128.store(d + 2 * os, f32x4.shuffle(t1, t3, 0, 1, 4, 5));
        v128.store(d + 3 * os, f32x4.shuffle(t1, t3, 2, 3, 6, 7));
      }
      for (; c < cols; c++) {
        for (let i = 0; i < 4; i++) {
          store<f32>(dst + <usize>c * os + (<usize>(r + i) << 2), load<f32>(s + <usize>i * xs + (<usize>c << 2)));
        }
      }
    } else {
      for (let i = r; i < rows; i++) {
        for (let c = 0; c < cols; c++) {
          store<f32>(dst + <usize>c * os + (<usize>i << 2), load<f32>(src + <usize>i * xs + (<usize>c << 2)));
        }
      }
    }
  }
}

/**
 * out[bc][s] = act(x[bc][s] · scale[bc] + shift[bc]) over planes = batch · channels; out may alias x.
 * Threads split the planes.
 */
export function channelAffine(
  x: usize, scale: usize, shift: usize, out: usize, planes: i32, spatial: i32, act: i32, tid: i32, nt: i32,
): void {
  const p0 = sliceBegin(planes, tid, nt), p1 = sliceBegin(planes, tid + 1, nt);
  for (let pl = p0; pl < p1; pl++) {
    const off = <usize>pl * <usize>spatial << 2;
    const ps = x + off, pd = out + off;
    const s = f32x4.splat(load<f32>(scale + (<usize>pl << 2)));
    const b = f32x4.splat(load<f32>(shift + (<usize>pl << 2)));
    let i = 0;
    for (; i + 8 <= spatial; i += 8) {
      const o = <usize>i << 2;
      const v0 = vact(f32x4.add(f32x4.mul(v128.load(ps + o), s), b), act);
      const v1 = vact(f32x4.add(f32x4.mul(v128.load(ps + o, 16), s), b), act);
      v128.store(pd + o, v0);
      v128.store(pd + o, v1, 16);
    }
    for (; i < spatial; i += 4) {
      const o = <usize>i << 2;
      const k = spatial - i;
      storePartial(pd + o, vact(f32x4.add(f32x4.mul(loadPartial(ps + o, k), s), b), act), k);
    }
  }
}

/** out[r·outStride + c] = x[r·xStride + c] for r < rows, c < cols (offsets already applied). Threads split rows. */
export function copy2d(x: usize, out: usize, rows: i32, cols: i32, xStride: i32, outStride: i32, tid: i32, nt: i32): void {
  const r0 = sliceBegin(rows, tid, nt), r1 = sliceBegin(rows, tid + 1, nt);
  const n = <usize>cols << 2;
  for (let r = r0; r < r1; r++) {
    memory.copy(out + (<usize>r * <usize>outStride << 2), x + (<usize>r * <usize>xStride << 2), n);
  }
}
