import { Tensor } from "../../tensor/tensor.js";

/** Copies the [y0, y0+h) × [x0, x0+w) window of every plane of an NCHW tensor (clipped to the tensor). */
export function crop(t: Tensor, y0: number, x0: number, h: number, w: number): Tensor {
  const [b, c, H, W] = t.shape;
  const hh = Math.max(0, Math.min(h, H - y0)),
    ww = Math.max(0, Math.min(w, W - x0));
  const out = new Float32Array(b * c * hh * ww);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < hh; y++) {
      const src = (p * H + y0 + y) * W + x0;
      out.set(t.data.subarray(src, src + ww), (p * hh + y) * ww);
    }
  }
  return new Tensor(out, [b, c, hh, ww]);
}

/** diffusers blend_v: the first `extent` rows of b fade in from the last rows of a (in place on b). */
export function blendV(a: Tensor, b: Tensor, extent: number): void {
  const [n, c, ah, w] = a.shape;
  const bh = b.shape[2];
  const e = Math.min(ah, bh, extent);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < e; y++) {
      const wb = y / e;
      const ra = (p * ah + ah - e + y) * w,
        rb = (p * bh + y) * w;
      for (let x = 0; x < w; x++) b.data[rb + x] = a.data[ra + x] * (1 - wb) + b.data[rb + x] * wb;
    }
  }
}

/** diffusers blend_h: the first `extent` columns of b fade in from the last columns of a (in place on b). */
export function blendH(a: Tensor, b: Tensor, extent: number): void {
  const [n, c, h, aw] = a.shape;
  const bw = b.shape[3];
  const e = Math.min(aw, bw, extent);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      const ra = (p * h + y) * aw,
        rb = (p * h + y) * bw;
      for (let x = 0; x < e; x++) {
        const wb = x / e;
        b.data[rb + x] = a.data[ra + aw - e + x] * (1 - wb) + b.data[rb + x] * wb;
      }
    }
  }
}

export interface TileGrid {
  /** Input tile side. */
  tileIn: number;
  /** Step between tile origins in the input. */
  stride: number;
  /** Overlap blended in the output. */
  blendExtent: number;
  /** Output kept per tile (the rest overlaps the next tile). */
  rowLimit: number;
}

/** Tile origins along one axis, as diffusers' range(0, size, stride). */
export function tileStarts(size: number, stride: number): number[] {
  const starts: number[] = [];
  for (let i = 0; i < size; i += stride) starts.push(i);
  return starts;
}

/**
 * diffusers' tiled_encode / tiled_decode loop: run `fn` on overlapping tiles, blend each tile with its
 * upper and left neighbours (already blended, as diffusers blends in place), keep rowLimit×rowLimit of
 * each, and concatenate.
 */
export async function runTiled(x: Tensor, grid: TileGrid, fn: (tile: Tensor) => Promise<Tensor>): Promise<Tensor> {
  const ys = tileStarts(x.shape[2], grid.stride),
    xs = tileStarts(x.shape[3], grid.stride);
  const rows: Tensor[][] = [];
  for (const y0 of ys) {
    const row: Tensor[] = [];
    for (const x0 of xs) row.push(await fn(crop(x, y0, x0, grid.tileIn, grid.tileIn)));
    rows.push(row);
  }
  const kept: Tensor[][] = rows.map((row, i) =>
    row.map((tile, j) => {
      if (i > 0) blendV(rows[i - 1][j], tile, grid.blendExtent);
      if (j > 0) blendH(row[j - 1], tile, grid.blendExtent);
      return crop(tile, 0, 0, grid.rowLimit, grid.rowLimit);
    }),
  );
  return concat2d(kept);
}

/** Joins a grid of NCHW tensors: tiles in a row share height, rows share total width. */
function concat2d(grid: Tensor[][]): Tensor {
  const [b, c] = grid[0][0].shape;
  const heights = grid.map((row) => row[0].shape[2]);
  const widths = grid[0].map((t) => t.shape[3]);
  const H = heights.reduce((a, h) => a + h, 0),
    W = widths.reduce((a, w) => a + w, 0);
  const out = new Float32Array(b * c * H * W);
  let y0 = 0;
  grid.forEach((row, i) => {
    let x0 = 0;
    row.forEach((t, j) => {
      const h = heights[i],
        w = widths[j];
      for (let p = 0; p < b * c; p++) {
        for (let y = 0; y < h; y++)
          out.set(t.data.subarray((p * h + y) * w, (p * h + y + 1) * w), (p * H + y0 + y) * W + x0);
      }
      x0 += w;
    });
    y0 += heights[i];
  });
  return new Tensor(out, [b, c, H, W]);
}
