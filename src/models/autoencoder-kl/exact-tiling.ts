/**
 * Exact tiling: tiled encode/decode whose output equals the untiled output, with memory bounded by a budget.
 *
 * Everything in the VAE is local (convolutions, upsampling, activations) except GroupNorm statistics and
 * the mid-block attention. So: the mid block runs once, untiled, at latent resolution; the full-resolution
 * part is a flat program of ops run tile by tile with halos wide enough that each tile's core is exact;
 * and each GroupNorm's per-group mean and variance are first reduced over the cores of all tiles (a
 * "statistics pass"), then applied as a per-channel affine. A statistics pass recomputes from the last
 * checkpoint — an intermediate tensor kept on the host, in row bands freed as soon as no later tile needs
 * them — so memory is bounded by the budget for checkpoints plus one tile's working set, and compute grows
 * with the distance between checkpoints (tensors larger than the budget are never stored; they are recomputed).
 */
import { AutoencoderKLError } from "../../errors.js";
import type { DeviceTensor, RunContext } from "../../nn/context.js";
import type { Conv2d } from "../../nn/conv2d.js";
import type { GroupNorm } from "../../nn/group-norm.js";
import { convOutSize, type Program, runProgram, type Step, upsampleFused } from "../../nn/program.js";
import { convGrain } from "../../ops/conv2d.js";
import { Tensor } from "../../tensor/tensor.js";

/** The tiler runs the same steps as the eager pass (src/nn/program.ts). */
type Op = Step;

/** A row or column range of a tensor at one level, with the part whose values are exact. */
interface Span {
  start: number;
  end: number;
  validStart: number;
  validEnd: number;
  /** The full size of the axis at this level. */
  full: number;
}

interface ConvGeometry {
  k: number;
  s: number;
  padBefore: number;
  padAfter: number;
}

function convGeometry(conv: Conv2d, axis: 0 | 1): ConvGeometry {
  const p = conv.padding;
  return {
    k: conv.kernelSize,
    s: conv.stride,
    padBefore: axis === 0 ? p.top : p.left,
    padAfter: axis === 0 ? p.bottom : p.right,
  };
}

/** Output span of a convolution run on a crop: the kernel zero-pads the crop, which is only right at real borders. */
function spanAfterConv(a: Span, g: ConvGeometry): Span {
  const n = a.end - a.start;
  const full = Math.floor((a.full + g.padBefore + g.padAfter - g.k) / g.s) + 1;
  const outN = Math.floor((n + g.padBefore + g.padAfter - g.k) / g.s) + 1;
  if (a.start % g.s !== 0)
    throw new AutoencoderKLError("exact tiling", `crop start ${a.start} is not aligned to stride ${g.s}`);
  const start = a.start / g.s,
    end = start + outN;
  // Input rows that hold right values, extended past a real border where the kernel's zero pad is right too.
  const lo = a.validStart === 0 ? -Infinity : a.validStart;
  const hi = a.validEnd === a.full ? Infinity : a.validEnd;
  // Output row o reads input rows [o*s - padBefore, o*s - padBefore + k).
  const vs = Math.max(start, Math.ceil((lo + g.padBefore) / g.s));
  const ve = Math.min(end, full, Math.floor((hi + g.padBefore - g.k) / g.s) + 1);
  return { start, end: Math.min(end, full), validStart: Math.min(vs, ve), validEnd: Math.max(vs, ve), full };
}

function spanAfterUp(a: Span): Span {
  return {
    start: 2 * a.start,
    end: 2 * a.end,
    validStart: 2 * a.validStart,
    validEnd: 2 * a.validEnd,
    full: 2 * a.full,
  };
}

/** Input rows a conv needs for output rows [a, b). */
function needBeforeConv(a: number, b: number, g: ConvGeometry, fullIn: number): [number, number] {
  return [Math.max(0, a * g.s - g.padBefore), Math.min(fullIn, (b - 1) * g.s - g.padBefore + g.k)];
}

/** Full size of each axis before each op (index i: the size of op i's input; index ops.length: the output). */
function levelSizes(ops: readonly Op[], h: number, w: number): [number, number][] {
  const sizes: [number, number][] = [[h, w]];
  for (const op of ops) {
    if (op.kind === "conv" || op.kind === "residualConv") {
      h = convOutSize(op.conv, h, 0);
      w = convOutSize(op.conv, w, 1);
    } else if (op.kind === "up") {
      h *= 2;
      w *= 2;
    }
    sizes.push([h, w]);
  }
  return sizes;
}

/** Scale between two program positions' resolutions: 2^(ups) / 2^(downs), as [num, den]. */
function scaleBetween(ops: readonly Op[], from: number, to: number): [number, number] {
  let num = 1,
    den = 1;
  for (let i = from; i < to; i++) {
    const op = ops[i];
    if (op.kind === "up") num *= 2;
    else if ((op.kind === "conv" || op.kind === "residualConv") && op.conv.stride > 1) den *= op.conv.stride;
  }
  return [num, den];
}

/**
 * Frees a host array the tiler owns now rather than at the next garbage collection, where the engine can
 * (ArrayBuffer.prototype.transfer: Node ≥ 21, current browsers): a dropped checkpoint band is then returned at
 * once instead of piling up with the tiles' copies until V8 collects. Elsewhere it is left to the collector.
 */
export function releaseHost(data: Float32Array): void {
  const buffer = data.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer; detached?: boolean };
  if (data.byteOffset === 0 && data.byteLength === buffer.byteLength && !buffer.detached) buffer.transfer?.(0);
}

/** Whether releaseHost frees at once here (else released arrays wait for the garbage collector). */
export const hostReleaseIsImmediate = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function";

/**
 * Where exact tiling can keep its checkpoints outside the process's memory (in Node, `fileCheckpointStorage()`
 * from autoencoderkl/node: a temporary file, so the operating system's page cache holds them, not the heap).
 */
export interface CheckpointStorage {
  /** A scratch area for one run; closed when the run ends. */
  open(): CheckpointArea;
}

export interface CheckpointArea {
  /** Stores the values; returns their position (in floats) for `read`. */
  write(data: Float32Array): number;
  /** Fills `out` with the `out.length` floats stored from `position`. */
  read(position: number, out: Float32Array): void;
  /**
   * A new checkpoint starts: everything stored before the start of the one two before it is no longer read,
   * so its space may be reused (a checkpoint is formed from the one before it, and inside a resnet also from
   * the one before that: the block's input, added at its end).
   */
  nextCheckpoint(): void;
  close(): void;
}

/** One reusable host array for moving bands to and from a CheckpointArea. */
class IoBuffer {
  private data: Float32Array | null = null;
  take(length: number): Float32Array {
    if (!this.data || this.data.length < length) {
      this.release();
      this.data = new Float32Array(length);
    }
    return this.data.subarray(0, length);
  }
  release(): void {
    if (this.data) releaseHost(this.data);
    this.data = null;
  }
}

/**
 * Columns per block of a stored band. A band is stored as blocks of this many columns, each [rows][planes]
 * [columns], so a tile's crop is one read per block and band: the rows it needs, every plane. (Whole rows
 * per plane moved 8× the data a 64-px tile needs at 512²; a read per plane and block cost more in calls.)
 */
export const STORED_BLOCK = 64;

interface Band {
  start: number;
  end: number;
  /** The values [B·C][rows][W] in memory, or null once released or stored. */
  data: Float32Array | null;
  /** Whether the tiler made the array (else it is the caller's, never released). */
  owned: boolean;
  /** Per block of STORED_BLOCK columns, the position in the CheckpointArea of its values ([rows][B·C][columns]). */
  stored: number[] | null;
}

/** A tensor held on the host as row bands [B, C, rows, W], so consumed rows can be dropped early. */
class BandedTensor {
  readonly bands: Band[] = [];
  /** Where stored bands live (bands are kept in memory without one). */
  area: CheckpointArea | null = null;
  io: IoBuffer | null = null;
  constructor(
    readonly batch: number,
    readonly channels: number,
    readonly height: number,
    readonly width: number,
  ) {}

  addBand(start: number, end: number): Float32Array {
    const data = new Float32Array(this.batch * this.channels * (end - start) * this.width);
    this.bands.push({ start, end, data, owned: true, stored: null });
    return data;
  }

  /** Copies rows [r0, r1) × cols [c0, c1) into a new [B, C, r1-r0, c1-c0] tensor. */
  crop(r0: number, r1: number, c0: number, c1: number): Tensor {
    const { batch: B, channels: C, width: W } = this;
    const h = r1 - r0,
      w = c1 - c0;
    const out = new Float32Array(B * C * h * w);
    const P = B * C;
    for (const band of this.bands) {
      const lo = Math.max(r0, band.start),
        hi = Math.min(r1, band.end);
      if (lo >= hi) continue;
      const bh = band.end - band.start;
      if (band.stored !== null && this.area && this.io) {
        // the rows needed of each block the columns touch, every plane: one read each
        for (let b = Math.floor(c0 / STORED_BLOCK); b * STORED_BLOCK < c1; b++) {
          const x0 = b * STORED_BLOCK,
            bw = Math.min(STORED_BLOCK, W - x0);
          const from = Math.max(c0, x0),
            n = Math.min(c1, x0 + bw) - from;
          const rows = this.io.take((hi - lo) * P * bw);
          this.area.read(band.stored[b] + (lo - band.start) * P * bw, rows);
          for (let y = lo; y < hi; y++) {
            for (let p = 0; p < P; p++) {
              const src = ((y - lo) * P + p) * bw + (from - x0);
              out.set(rows.subarray(src, src + n), (p * h + (y - r0)) * w + (from - c0));
            }
          }
        }
        continue;
      }
      if (!band.data)
        throw new AutoencoderKLError("exact tiling", `rows ${lo}..${hi} were released before their last use`);
      for (let p = 0; p < P; p++) {
        for (let y = lo; y < hi; y++) {
          const src = (p * bh + (y - band.start)) * W + c0;
          out.set(band.data.subarray(src, src + w), (p * h + (y - r0)) * w);
        }
      }
    }
    return new Tensor(out, [B, C, h, w]);
  }

  /** Drops bands that end at or before `row`. */
  releaseBefore(row: number): void {
    for (const band of this.bands) {
      if (band.end > row) continue;
      band.stored = null;
      if (!band.data) continue;
      if (band.owned) releaseHost(band.data);
      band.data = null;
    }
  }

  /** Moves the in-memory bands the tiler made to the area (block by block), freeing their host arrays. */
  store(): void {
    if (!this.area || !this.io) return;
    const W = this.width,
      P = this.batch * this.channels;
    for (const band of this.bands) {
      if (!band.data || !band.owned) continue;
      const bh = band.end - band.start;
      band.stored = [];
      for (let x0 = 0; x0 < W; x0 += STORED_BLOCK) {
        const bw = Math.min(STORED_BLOCK, W - x0);
        const block = this.io.take(bh * P * bw);
        for (let y = 0; y < bh; y++) {
          for (let p = 0; p < P; p++) {
            const src = (p * bh + y) * W + x0;
            block.set(band.data.subarray(src, src + bw), (y * P + p) * bw);
          }
        }
        band.stored.push(this.area.write(block));
      }
      releaseHost(band.data);
      band.data = null;
    }
  }

  static fromTensor(t: Tensor): BandedTensor {
    const [b, c, h, w] = t.shape;
    const bt = new BandedTensor(b, c, h, w);
    // the caller's data: never released by the tiler
    bt.bands.push({ start: 0, end: h, data: t.data, owned: false, stored: null });
    return bt;
  }
}

/** Per (batch, group) running sums for one GroupNorm, reduced over tile cores in float64. */
class GroupStats {
  readonly sum: Float64Array;
  readonly sumSq: Float64Array;
  count = 0;
  constructor(
    readonly batch: number,
    readonly groups: number,
  ) {
    this.sum = new Float64Array(batch * groups);
    this.sumSq = new Float64Array(batch * groups);
  }

  /** Adds the [rows, cols] window of a [B, C, h, w] host array. */
  accumulate(
    data: Float32Array,
    channels: number,
    h: number,
    w: number,
    rows: [number, number],
    cols: [number, number],
  ): void {
    const cpg = channels / this.groups;
    for (let b = 0; b < this.batch; b++) {
      for (let c = 0; c < channels; c++) {
        const gi = b * this.groups + Math.floor(c / cpg);
        let s = 0,
          s2 = 0;
        for (let y = rows[0]; y < rows[1]; y++) {
          const row = ((b * channels + c) * h + y) * w;
          for (let x = cols[0]; x < cols[1]; x++) {
            const v = data[row + x];
            s += v;
            s2 += v * v;
          }
        }
        this.sum[gi] += s;
        this.sumSq[gi] += s2;
      }
    }
    this.count += cpg * (rows[1] - rows[0]) * (cols[1] - cols[0]);
  }
}

/** The per-(batch, channel) affine that GroupNorm with these statistics amounts to (γ, β: the host copies). */
function affineFor(ctx: RunContext, norm: GroupNorm, stats: GroupStats): { scale: DeviceTensor; shift: DeviceTensor } {
  const gamma = norm.weight.hostValue,
    beta = norm.bias.hostValue;
  const C = norm.channels,
    cpg = C / norm.groups,
    B = stats.batch;
  const scale = new Float32Array(B * C),
    shift = new Float32Array(B * C);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const gi = b * norm.groups + Math.floor(c / cpg);
      const n = stats.count / B;
      const mean = stats.sum[gi] / n;
      const variance = Math.max(0, stats.sumSq[gi] / n - mean * mean);
      const inv = 1 / Math.sqrt(variance + norm.eps);
      scale[b * C + c] = inv * gamma[c];
      shift[b * C + c] = beta[c] - mean * inv * gamma[c];
    }
  }
  const s = ctx.alloc([B, C]),
    t = ctx.alloc([B, C]);
  ctx.k.write(s.buf, scale);
  ctx.k.write(t.buf, shift);
  return { scale: s, shift: t };
}

export interface ExactTilingOptions {
  /** Tile core side at the resolution of the program's input (latent for decode, image for encode). */
  tileSize: number;
  /** Largest tensor (bytes) kept as a checkpoint; larger ones are recomputed. */
  checkpointBytes: number;
  /** Keep checkpoints there instead of in memory (each band once it is formed); the output stays in memory. */
  storage?: CheckpointStorage;
  /**
   * Also keep a resnet's tensor before its second norm when it fits (default true): less work, but three
   * checkpoints alive at once instead of two.
   */
  resnetCheckpoints?: boolean;
}

/** One sweep over all tiles: reduce the statistics of the norm at `to`, or form the tensor entering `to`. */
export interface Pass {
  kind: "stats" | "form";
  from: number;
  to: number;
  /**
   * The checkpoint whose tensor is the resnet skip pending at `from` (a checkpoint inside a resnet: its
   * second half adds the block's input, read from the checkpoint at the block's start).
   */
  skip?: number;
  /** Tile core side at the level entering `to`. */
  side: number;
  tiles: number;
}

type PassSpan = Omit<Pass, "side" | "tiles">;

/**
 * Where a resnet's second half starts (the norm before its residual convolution), when the resnet starts at
 * checkpoint `from` and ends before `next`: a checkpoint there spares the statistics pass of that norm from
 * recomputing the first convolution. Null when ops [from, next) are not one such resnet.
 */
function resnetSplit(ops: readonly Op[], from: number, next: number): number | null {
  let i = from;
  while (ops[i]?.kind === "boundary" || ops[i]?.kind === "progress") i++;
  if (ops[i]?.kind !== "push") return null;
  let split: number | null = null;
  for (let j = i + 1; j < next; j++) {
    const k = ops[j].kind;
    if (k === "push" || k === "global" || k === "up") return null;
    if (k === "norm") split = j;
    if (k === "residualConv") return split !== null && split > i + 1 && j === next - 1 ? split : null;
  }
  return null;
}

/**
 * The schedule: from each checkpoint, a statistics pass for every norm before the next checkpoint, then a
 * pass that forms that checkpoint. The next checkpoint is the first boundary whose tensor fits the budget
 * (the end of the program when none does). Where a resnet starts at a checkpoint, its tensor before the
 * second norm is one too when it fits, so no pass recomputes the first convolution (the second half reads the
 * block's input from the checkpoint before). Tiles: see passSides.
 */
export function planExact(ops: readonly Op[], inputShape: readonly number[], options: ExactTilingOptions): Pass[] {
  const [B, C, H, W] = inputShape;
  const sizes = levelSizes(ops, H, W);
  const spans: PassSpan[] = [];
  const statsAndForm = (from: number, to: number, skip?: number) => {
    for (let i = from; i < to; i++)
      if (ops[i].kind === "norm") spans.push({ kind: "stats", from, to: i, ...(skip === undefined ? {} : { skip }) });
    spans.push({ kind: "form", from, to, ...(skip === undefined ? {} : { skip }) });
  };
  let from = 0;
  while (from < ops.length) {
    let next = ops.length;
    for (let i = from + 1; i < ops.length; i++) {
      if (ops[i].kind !== "boundary") continue;
      const [h, w] = sizes[i];
      if (B * channelsAt(ops, i, C) * h * w * 4 <= options.checkpointBytes) {
        next = i;
        break;
      }
    }
    const split = resnetSplit(ops, from, next);
    const fits = (i: number) => B * channelsAt(ops, i, C) * sizes[i][0] * sizes[i][1] * 4 <= options.checkpointBytes;
    if (split !== null && options.resnetCheckpoints !== false && fits(split)) {
      statsAndForm(from, split);
      statsAndForm(split, next, from);
    } else statsAndForm(from, next);
    from = next;
  }
  const sides = passSides(ops, sizes, B, C, spans, options.tileSize);
  return spans.map((p, k) => {
    const [h, w] = sizes[p.to];
    return { ...p, side: sides[k], tiles: Math.ceil(h / sides[k]) * Math.ceil(w / sides[k]) };
  });
}

/** Tile core side at the level entering op `to`: `tile` is measured at the program input's resolution. */
function coreSide(ops: readonly Op[], to: number, tile: number): number {
  const [num, den] = scaleBetween(ops, 0, to);
  return Math.max(1, Math.floor((tile * num) / den));
}

/** Bytes of the largest tensor a tile of core side `side` (a middle one: halos on every side) holds in ops [from, to). */
function tileTensorBytes(
  ops: readonly Op[],
  sizes: [number, number][],
  B: number,
  C: number,
  from: number,
  to: number,
  side: number,
): number {
  const [th, tw] = sizes[to];
  const sy = Math.min(side, th),
    sx = Math.min(side, tw);
  const y0 = Math.floor((th - sy) / 2),
    x0 = Math.floor((tw - sx) / 2);
  let most = B * channelsAt(ops, to, C) * sy * sx * 4;
  for (let i = from; i < to; i++) {
    const r = needFor(ops, sizes, i, to, [y0, y0 + sy], 0),
      c = needFor(ops, sizes, i, to, [x0, x0 + sx], 1);
    most = Math.max(most, B * channelsAt(ops, i, C) * (r[1] - r[0]) * (c[1] - c[0]) * 4);
  }
  return most;
}

/**
 * Tile sides per pass. `tileSize` (at the program input's resolution) fixes the tiles of the pass whose tiles
 * hold the largest tensors; every other pass grows its tiles up to that size of tensor, since what bounds
 * memory is bytes, not pixels. Without this a constant side left the low-resolution, many-channel passes
 * with tiny tiles: their halos doubled the work and every tile repeated the weight transforms (SD decode
 * 512² at 64-px tiles: 64 tiles of 8×8 at 512 channels).
 */
function passSides(
  ops: readonly Op[],
  sizes: [number, number][],
  B: number,
  C: number,
  passes: readonly PassSpan[],
  tileSize: number,
): number[] {
  const base = passes.map((p) => coreSide(ops, p.to, tileSize));
  const bytes = (p: PassSpan, side: number) => tileTensorBytes(ops, sizes, B, C, p.from, p.to, side);
  const target = Math.max(0, ...passes.map((p, k) => bytes(p, base[k])));
  // a checkpoint's band (a row of tiles, on the host) must not grow either
  const band = (p: PassSpan, side: number) =>
    p.kind === "form" && p.to < ops.length ? B * channelsAt(ops, p.to, C) * side * sizes[p.to][1] * 4 : 0;
  const bandCap = Math.max(0, ...passes.map((p, k) => band(p, base[k])));
  const fits = (p: PassSpan, side: number) => bytes(p, side) <= target && band(p, side) <= bandCap;
  return passes.map((p, k) => {
    const [th, tw] = sizes[p.to];
    let lo = base[k],
      hi = Math.max(th, tw);
    if (lo < hi && fits(p, hi)) lo = hi;
    else if (lo < hi) {
      // the largest side that fits (bytes grow with the side)
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (fits(p, mid)) lo = mid;
        else hi = mid;
      }
    }
    // then, no larger, the side with the least work: whole tiles, crops that fill the kernels' groups
    let best = lo,
      bestCost = passCost(ops, sizes, p.from, p.to, lo);
    for (let s = lo - 1; s >= Math.ceil(lo * 0.6); s--) {
      const cost = passCost(ops, sizes, p.from, p.to, s);
      if (cost < bestCost) [best, bestCost] = [s, cost];
    }
    return best;
  });
}

/**
 * Per tile, work that does not grow with its size, in multiply-adds: measured at 512² (SD decoder, 2 threads,
 * checkpoints in files) as about 1.8 ms a tile besides the kernels (crops, reads, uploads, calls), what the
 * kernels do in 1.5e8 multiply-adds.
 */
const TILE_OVERHEAD_MACS = 1.5e8;
/**
 * Per tile and convolution, the weight transforms and packing each call repeats, in multiply-adds per weight
 * (C·O·k²): a Winograd F(4×4) pack of 512×512 weights took as long as ~100 multiply-adds per weight.
 */
const PACK_MACS_PER_WEIGHT = 100;

/**
 * The work of a pass in tiles of side `side`: each convolution's output over every tile's crop, rounded up to
 * its grain (convGrain), plus what each tile repeats.
 */
function passCost(ops: readonly Op[], sizes: [number, number][], from: number, to: number, side: number): number {
  const [th, tw] = sizes[to];
  const ny = Math.ceil(th / side),
    nx = Math.ceil(tw / side);
  const den = scaleBetween(ops, from, to)[1];
  const convs = ops
    .map((op, i) => ({ op, i }))
    .filter((c): c is { op: Extract<Op, { kind: "conv" | "residualConv" }>; i: number } => {
      const k = c.op.kind;
      return c.i >= from && c.i < to && (k === "conv" || k === "residualConv");
    });
  const grains = convs.map(({ op, i }) =>
    convGrain(op.conv.inChannels, op.conv.outChannels, op.conv.kernelSize, op.conv.stride, upsampleFused(ops, i, from)),
  );
  // Per axis and convolution, the sum over tiles of its output extent (padded to its grain, and plain): the
  // kernels compute over the whole crop they are given (zero-padded at its edges), upsampled where the pass does.
  const extents = (full: number, axis: 0 | 1): { padded: number[]; plain: number[] } => {
    const padded = convs.map(() => 0),
      plain = convs.map(() => 0);
    for (let a = 0; a < full; a += side) {
      const [s, e] = needFor(ops, sizes, from, to, [a, Math.min(full, a + side)], axis);
      let n = e - Math.floor(s / den) * den;
      let c = 0;
      for (let i = from; i < to; i++) {
        const op = ops[i];
        if (op.kind === "up") n *= 2;
        else if (op.kind === "conv" || op.kind === "residualConv") {
          n = convOutSize(op.conv, n, axis);
          const g = axis === 0 ? grains[c].rows : grains[c].cols;
          padded[c] += Math.ceil(n / g) * g;
          plain[c++] += n;
        }
      }
    }
    return { padded, plain };
  };
  const rows = extents(th, 0),
    cols = extents(tw, 1);
  let macs = ny * nx * TILE_OVERHEAD_MACS;
  convs.forEach(({ op }, c) => {
    const { inChannels: C, outChannels: O, kernelSize: k } = op.conv;
    macs += C * O * k * k * (rows.padded[c] * cols.padded[c] + ny * nx * PACK_MACS_PER_WEIGHT);
    if (op.kind === "residualConv" && op.shortcut) macs += op.shortcut.inChannels * O * rows.plain[c] * cols.plain[c];
  });
  return macs;
}

/**
 * Runs `ops` over `input` (host, [B, C, H, W]) pass by pass as `planExact` schedules, and returns the exact
 * full output. `onTile` is called after every tile of every pass.
 */
export async function runExact(
  ctx: RunContext,
  ops: readonly Op[],
  input: Tensor,
  options: ExactTilingOptions,
  onTile: () => Promise<void>,
  /** The input is the tiler's to release: with a storage it is stored like a checkpoint and freed at once. */
  consumeInput = false,
): Promise<Tensor> {
  const [B, C, H, W] = input.shape;
  const sizes = levelSizes(ops, H, W);
  const affines = new Map<number, { scale: DeviceTensor; shift: DeviceTensor }>();
  const passes = planExact(ops, input.shape, options);
  const first = BandedTensor.fromTensor(input);
  // the checkpoints alive, by the op they enter, and the last pass that reads each
  const kept = new Map<number, BandedTensor>([[0, first]]);
  const lastUse = new Map<number, number>();
  passes.forEach((p, k) => {
    lastUse.set(p.from, k);
    if (p.skip !== undefined) lastUse.set(p.skip, k);
  });
  const area = options.storage?.open() ?? null;
  const io = area ? new IoBuffer() : null;
  if (area && consumeInput) {
    area.nextCheckpoint();
    first.bands[0].owned = true;
    first.area = area;
    first.io = io;
    first.store();
  }
  const checkpointAt = (i: number): BandedTensor => {
    const t = kept.get(i);
    if (!t) throw new AutoencoderKLError("exact tiling", `internal: checkpoint ${i} read after it was released`);
    return t;
  };
  try {
    for (const [k, pass] of passes.entries()) {
      const { from, to, side } = pass;
      const source = checkpointAt(from);
      const skip = pass.skip === undefined ? null : checkpointAt(pass.skip);
      if (pass.kind === "stats") {
        const op = ops[to] as Extract<Op, { kind: "norm" }>;
        const s = new GroupStats(B, op.norm.groups);
        await forEachTile(
          ctx,
          ops,
          sizes,
          source,
          skip,
          from,
          to,
          side,
          affines,
          async (result, core) => {
            s.accumulate(result.data, result.shape[1], result.shape[2], result.shape[3], core.rows, core.cols);
          },
          onTile,
        );
        affines.set(to, affineFor(ctx, op.norm, s));
        continue;
      }
      const [nh, nw] = sizes[to];
      const out = new BandedTensor(B, channelsAt(ops, to, C), nh, nw);
      // the program's output is written straight into the array returned (no bands, no final copy)
      const whole = to === ops.length ? new Float32Array(B * channelsAt(ops, to, C) * nh * nw) : null;
      // every checkpoint but the output goes to the storage, band by band as each is complete
      if (to < ops.length && area) {
        area.nextCheckpoint();
        out.area = area;
        out.io = io;
      }
      // rows above a tile row's crop are never read again by this pass; dropped when no later pass reads them
      const dropping = [source, skip].filter((t, i): t is BandedTensor => {
        const at = i === 0 ? from : pass.skip;
        return t !== null && at !== undefined && lastUse.get(at) === k;
      });
      let band: { start: number; data: Float32Array } | null = null;
      await forEachTile(
        ctx,
        ops,
        sizes,
        source,
        skip,
        from,
        to,
        side,
        affines,
        async (result, core, sourceRowStart) => {
          if (!band || band.start !== core.globalRows[0]) {
            out.store();
            band = {
              start: core.globalRows[0],
              data: whole ?? out.addBand(core.globalRows[0], core.globalRows[1]),
            };
            // Later tiles start at or below this crop (the skip's crop too: same level, no halo)
            for (const t of dropping) t.releaseBefore(sourceRowStart);
          }
          const [, ch, h, w] = result.shape;
          const bh = core.rows[1] - core.rows[0],
            cw = core.cols[1] - core.cols[0];
          // band rows [P][bh][nw], or the whole output [P][nh][nw]
          const [rowsPer, row0] = whole ? [nh, core.globalRows[0]] : [bh, 0];
          for (let p = 0; p < B * ch; p++) {
            for (let y = 0; y < bh; y++) {
              const src = (p * h + core.rows[0] + y) * w + core.cols[0];
              band.data.set(result.data.subarray(src, src + cw), (p * rowsPer + row0 + y) * nw + core.globalCols[0]);
            }
          }
        },
        onTile,
      );
      out.store();
      for (const [i, t] of kept) {
        if ((lastUse.get(i) ?? -1) > k) continue;
        t.releaseBefore(Number.POSITIVE_INFINITY);
        kept.delete(i);
      }
      if (whole) return new Tensor(whole, [B, channelsAt(ops, to, C), nh, nw]);
      kept.set(to, out);
    }
    throw new AutoencoderKLError("exact tiling", "internal: no pass formed the output");
  } finally {
    for (const a of affines.values()) ctx.free(a.scale, a.shift);
    io?.release();
    area?.close();
  }
}

/** Channel count of the tensor entering op `at` (ops.length: the output). */
function channelsAt(ops: readonly Op[], at: number, inChannels: number): number {
  let c = inChannels;
  for (let i = 0; i < at; i++) {
    const op = ops[i];
    if (op.kind === "conv" || op.kind === "residualConv") c = op.conv.outChannels;
  }
  return c;
}

interface Core {
  /** Core rows/cols inside the tile's result. */
  rows: [number, number];
  cols: [number, number];
  /** The same in the target level's coordinates. */
  globalRows: [number, number];
  globalCols: [number, number];
}

/**
 * Runs ops [from, to) on every tile of the target level (row-major), each from a crop of the checkpoint
 * with the halo the ops need, and hands the result and its exact core to `use`.
 */
async function forEachTile(
  ctx: RunContext,
  ops: readonly Op[],
  sizes: [number, number][],
  source: BandedTensor,
  skip: BandedTensor | null,
  from: number,
  to: number,
  side: number,
  affines: Map<number, { scale: DeviceTensor; shift: DeviceTensor }>,
  use: (result: Tensor, core: Core, sourceRowStart: number) => Promise<void>,
  onTile: () => Promise<void>,
): Promise<void> {
  const [th, tw] = sizes[to];
  // Strided convolutions need crops that start at multiples of the total stride between source and target.
  const den = scaleBetween(ops, from, to)[1];
  const align = (v: number, m: number) => Math.floor(v / m) * m;
  for (let y0 = 0; y0 < th; y0 += side) {
    const y1 = Math.min(th, y0 + side);
    for (let x0 = 0; x0 < tw; x0 += side) {
      const x1 = Math.min(tw, x0 + side);
      const rowNeed = needFor(ops, sizes, from, to, [y0, y1], 0);
      const colNeed = needFor(ops, sizes, from, to, [x0, x1], 1);
      const r0 = align(rowNeed[0], den),
        c0 = align(colNeed[0], den);
      const crop = source.crop(r0, rowNeed[1], c0, colNeed[1]);
      const skipCrop = skip
        ? (rows: Span, cols: Span): DeviceTensor => {
            const t = skip.crop(rows.start, rows.end, cols.start, cols.end);
            const d = ctx.alloc(t.shape);
            ctx.k.write(d.buf, t.data);
            releaseHost(t.data);
            return d;
          }
        : undefined;
      const { out, rows, cols } = await runOps(
        ctx,
        ops,
        sizes,
        from,
        to,
        crop.shape,
        crop.data,
        r0,
        c0,
        affines,
        skipCrop,
      );
      releaseHost(crop.data);
      const data = await ctx.k.read(out.buf);
      ctx.free(out);
      const tensor = new Tensor(data, out.shape);
      const core: Core = {
        rows: [y0 - rows.start, y1 - rows.start],
        cols: [x0 - cols.start, x1 - cols.start],
        globalRows: [y0, y1],
        globalCols: [x0, x1],
      };
      if (y0 < rows.validStart || y1 > rows.validEnd || x0 < cols.validStart || x1 > cols.validEnd) {
        throw new AutoencoderKLError(
          "exact tiling",
          `internal: tile core rows ${y0}..${y1} cols ${x0}..${x1} not covered by exact values (rows ${rows.validStart}..${rows.validEnd}, cols ${cols.validStart}..${cols.validEnd})`,
        );
      }
      await use(tensor, core, r0);
      releaseHost(data);
      await onTile();
    }
  }
}

/** Rows (axis 0) or columns (axis 1) of the source needed for target range [a, b), walking the ops backwards. */
function needFor(
  ops: readonly Op[],
  sizes: [number, number][],
  from: number,
  to: number,
  range: [number, number],
  axis: 0 | 1,
): [number, number] {
  let [a, b] = range;
  for (let i = to - 1; i >= from; i--) {
    const op = ops[i];
    const fullIn = sizes[i][axis];
    if (op.kind === "conv" || op.kind === "residualConv")
      [a, b] = needBeforeConv(a, b, convGeometry(op.conv, axis), fullIn);
    else if (op.kind === "up") [a, b] = [Math.floor(a / 2), Math.ceil(b / 2)];
  }
  return [a, b];
}

/**
 * Runs ops [from, to) on a crop (its shape and values; null values: a memory probe's run) whose top-left is
 * (r0, c0) at the source level; returns the result on the device, with the spans of rows and columns it covers.
 */
async function runOps(
  ctx: RunContext,
  ops: readonly Op[],
  sizes: [number, number][],
  from: number,
  to: number,
  cropShape: readonly number[],
  cropData: Float32Array | null,
  r0: number,
  c0: number,
  affines: Map<number, { scale: DeviceTensor; shift: DeviceTensor }>,
  skipCrop?: (rows: Span, cols: Span) => DeviceTensor,
): Promise<{ out: DeviceTensor; rows: Span; cols: Span }> {
  const [, , h, w] = cropShape;
  const full = sizes[from];
  let rows: Span = { start: r0, end: r0 + h, validStart: r0, validEnd: r0 + h, full: full[0] };
  let cols: Span = { start: c0, end: c0 + w, validStart: c0, validEnd: c0 + w, full: full[1] };
  let x = ctx.alloc([...cropShape]);
  if (cropData) ctx.k.write(x.buf, cropData);
  const skips: { t: DeviceTensor; rows: Span; cols: Span }[] = [];
  for (let i = from; i < to; i++) {
    const op = ops[i];
    switch (op.kind) {
      case "boundary":
      case "progress":
        break;
      case "global":
        throw new AutoencoderKLError("exact tiling", `internal: global step ${op.name} in a tiled segment`);
      case "push":
        skips.push({ t: x, rows, cols });
        break;
      case "norm": {
        const a = affines.get(i);
        if (!a)
          throw new AutoencoderKLError("exact tiling", `internal: statistics of op ${i} used before they were reduced`);
        const out = ctx.alloc(x.shape);
        await ctx.k.channelAffine({
          x: x.buf,
          scale: a.scale.buf,
          shift: a.shift.buf,
          out: out.buf,
          batch: x.shape[0],
          channels: x.shape[1],
          spatial: x.shape[2] * x.shape[3],
          activation: op.act,
        });
        if (!skips.some((s) => s.t === x)) ctx.free(x);
        x = out;
        break;
      }
      case "conv":
      case "residualConv": {
        let residual: DeviceTensor | undefined;
        let skip: (typeof skips)[number] | undefined;
        if (op.kind === "residualConv") {
          if (!skips.length && skipCrop) {
            // the skip pending from before `from`: its rows and columns where this convolution's output lies
            const r = spanAfterConv(rows, convGeometry(op.conv, 0)),
              c = spanAfterConv(cols, convGeometry(op.conv, 1));
            const exactly = (a: Span): Span => ({ ...a, validStart: a.start, validEnd: a.end });
            skips.push({ t: skipCrop(r, c), rows: exactly(r), cols: exactly(c) });
          }
          skip = skips.pop()!;
          residual = op.shortcut ? await op.shortcut.forward(ctx, skip.t) : skip.t;
        }
        const out = await op.conv.forward(ctx, x, residual, upsampleFused(ops, i, from));
        if (!skips.some((s) => s.t === x)) ctx.free(x);
        if (skip) {
          if (residual !== skip.t) ctx.free(residual!);
          ctx.free(skip.t);
        }
        rows = spanAfterConv(rows, convGeometry(op.conv, 0));
        cols = spanAfterConv(cols, convGeometry(op.conv, 1));
        if (skip) {
          rows = {
            ...rows,
            validStart: Math.max(rows.validStart, skip.rows.validStart),
            validEnd: Math.min(rows.validEnd, skip.rows.validEnd),
          };
          cols = {
            ...cols,
            validStart: Math.max(cols.validStart, skip.cols.validStart),
            validEnd: Math.min(cols.validEnd, skip.cols.validEnd),
          };
        }
        x = out;
        break;
      }
      case "up": {
        // the conv after it reads x upsampled (its spans are the upsampled ones from here)
        if (i + 1 < to && upsampleFused(ops, i + 1, from)) {
          rows = spanAfterUp(rows);
          cols = spanAfterUp(cols);
          break;
        }
        const [n, c, hh, ww] = x.shape;
        const out = ctx.alloc([n, c, 2 * hh, 2 * ww]);
        await ctx.k.upsampleNearest2x({ x: x.buf, out: out.buf, planes: n * c, height: hh, width: ww });
        if (!skips.some((s) => s.t === x)) ctx.free(x);
        x = out;
        rows = spanAfterUp(rows);
        cols = spanAfterUp(cols);
        break;
      }
    }
  }
  for (const s of skips) if (s.t !== x) ctx.free(s.t);
  return { out: x, rows, cols };
}

/**
 * Where a program is cut for exact tiling: the steps that read and write the program's lowest resolution
 * (the mid block with its attention, and whatever else runs at latent size) run once, untiled; the
 * higher-resolution steps before and after them — the upsample leaving that level included — are tiled.
 * Cuts fall where no resnet skip is pending.
 */
export function splitForTiling(program: Program): {
  before: Program;
  middle: Program;
  after: Program;
  middleLevel: number;
} {
  const level: number[] = [];
  const depth: number[] = [];
  let l = 0,
    d = 0;
  for (const s of program) {
    level.push(l);
    depth.push(d);
    if (s.kind === "up") l++;
    else if ((s.kind === "conv" || s.kind === "residualConv") && s.conv.stride > 1) l -= Math.log2(s.conv.stride);
    if (s.kind === "push") d++;
    else if (s.kind === "residualConv") d--;
  }
  level.push(l);
  depth.push(d);
  const min = Math.min(...level);
  // step i stays at the lowest level when its input (level[i]) and output (level[i + 1]) are both there
  const inMiddle = (i: number): boolean => level[i] === min && level[i + 1] === min;
  let first = 0;
  while (first < program.length && !inMiddle(first)) first++;
  let end = first;
  while (end < program.length && inMiddle(end)) end++;
  for (let i = end; i < program.length; i++) {
    if (inMiddle(i))
      throw new AutoencoderKLError("exact tiling", "the program visits its lowest resolution twice; cannot cut it");
  }
  if (depth[first] !== 0 || depth[end] !== 0)
    throw new AutoencoderKLError("exact tiling", "internal: cut inside a resnet");
  const before = program.slice(0, first),
    after = program.slice(end);
  for (const s of [...before, ...after]) {
    if (s.kind === "global")
      throw new AutoencoderKLError(
        "exact tiling",
        `${s.name} needs the whole tensor but runs above the lowest resolution`,
      );
  }
  return { before, middle: program.slice(first, end), after, middleLevel: min };
}

/** [B, C, H, W] of the tensor after `steps` on an input of `shape`. */
function shapeAfter(steps: Program, shape: readonly number[]): number[] {
  let [b, c, h, w] = shape;
  for (const s of steps) {
    if (s.kind === "conv" || s.kind === "residualConv") {
      [c, h, w] = [s.conv.outChannels, convOutSize(s.conv, h, 0), convOutSize(s.conv, w, 1)];
    } else if (s.kind === "up") {
      [h, w] = [2 * h, 2 * w];
    }
  }
  return [b, c, h, w];
}

/** Tile side at a segment's input, from the side at the program input and the segment's level (log2 scale). */
const sideAt = (tileSize: number, level: number): number => Math.max(1, Math.floor(tileSize * 2 ** level));

/** Progress steps a tiled run of `program` reports: every tile of every pass, plus one for the untiled middle. */
export function exactSteps(program: Program, inputShape: readonly number[], options: ExactTilingOptions): number {
  const { before, middle, after, middleLevel } = splitForTiling(program);
  const count = (steps: Program, shape: readonly number[], level: number) =>
    steps.length
      ? planExact(steps, shape, { ...options, tileSize: sideAt(options.tileSize, level) }).reduce(
          (a, p) => a + p.tiles,
          0,
        )
      : 0;
  const afterShape = shapeAfter([...before, ...middle], inputShape);
  return count(before, inputShape, 0) + (middle.length ? 1 : 0) + count(after, afterShape, middleLevel);
}

/**
 * Runs the whole program exactly as the eager pass would, with memory bounded by tiles and checkpoints:
 * the segments above the lowest resolution tile by tile (runExact), the lowest-resolution middle once.
 * `onStep` is called after every tile and after the middle.
 */
export async function runExactProgram(
  ctx: RunContext,
  program: Program,
  input: Tensor,
  options: ExactTilingOptions,
  onStep: () => Promise<void>,
): Promise<Tensor> {
  const { before, middle, after, middleLevel } = splitForTiling(program);
  let h = input;
  if (before.length) h = await runExact(ctx, before, h, options, onStep);
  if (middle.length) {
    const t = ctx.alloc(h.shape);
    ctx.k.write(t.buf, h.data);
    if (h !== input) releaseHost(h.data);
    const m = await runProgram(ctx, middle, t, { progress: false });
    const data = await ctx.k.read(m.buf);
    h = new Tensor(data, m.shape);
    ctx.free(t, m);
    await onStep();
  }
  if (after.length)
    h = await runExact(
      ctx,
      after,
      h,
      { ...options, tileSize: sideAt(options.tileSize, middleLevel) },
      onStep,
      middle.length > 0,
    );
  return h;
}

/** Tiles' host copies (crop + result) counted as alive at once: the current one and garbage not yet collected. */
const TILE_COPIES_UNCOLLECTED = 3;

/** What an exact-tiled run needs besides the device memory its context's backend records. */
export interface ExactFootprint {
  /** Peak bytes of host arrays the tiler holds at once: checkpoints (source and the one being formed), a crop and a tile's result. */
  hostBytes: number;
  /**
   * The work: multiply-adds of the convolutions as the kernels compute them over every tile of every pass
   * (Winograd's groups filled, per-tile costs counted: passCost), and of the untiled middle.
   */
  convMacs: number;
  /** The largest checkpoint kept on the host. */
  largestCheckpoint: number;
  /** The largest band of a checkpoint being formed (the largest host array the tiler allocates and frees). */
  largestBand: number;
  /** Bytes of host arrays the tiler allocates over the whole run (crops, results, bands). */
  allocatedBytes: number;
}

/**
 * Runs, on `ctx` (a memory probe's context: nothing is computed), the largest tile of every pass and the
 * untiled middle exactly as runExactProgram would, so the probe records the device working set; returns the
 * host memory and work the plan implies. `macs()` reads the probe's convolution counter.
 */
export async function probeExact(
  ctx: RunContext,
  program: Program,
  inputShape: readonly number[],
  options: ExactTilingOptions,
  macs: () => number,
): Promise<ExactFootprint> {
  const { before, middle, after, middleLevel } = splitForTiling(program);
  let hostBytes = 0,
    convMacs = 0,
    largestCheckpoint = 0,
    largestBand = 0,
    allocatedBytes = 0;
  const segment = async (
    ops: Program,
    shape: readonly number[],
    tileSize: number,
    consumeInput = false,
  ): Promise<void> => {
    const [B, C, H, W] = shape;
    const sizes = levelSizes(ops, H, W);
    const bytesAt = (i: number) => B * channelsAt(ops, i, C) * sizes[i][0] * sizes[i][1] * 4;
    const affines = new Map<number, { scale: DeviceTensor; shift: DeviceTensor }>();
    try {
      for (let i = 0; i < ops.length; i++) {
        if (ops[i].kind === "norm") {
          const c = channelsAt(ops, i, C);
          affines.set(i, { scale: ctx.alloc([B, c]), shift: ctx.alloc([B, c]) });
        }
      }
      const passes = planExact(ops, shape, { ...options, tileSize });
      const lastUse = new Map<number, number>();
      passes.forEach((p, k) => {
        lastUse.set(p.from, k);
        if (p.skip !== undefined) lastUse.set(p.skip, k);
      });
      // host bytes of the checkpoints alive, by the op they enter (stored ones: 0)
      const inputStored = consumeInput && options.storage !== undefined;
      const inMemory = new Map<number, number>([[0, inputStored ? 0 : bytesAt(0)]]);
      for (const [k, pass] of passes.entries()) {
        const { from, to, side } = pass;
        const den = scaleBetween(ops, from, to)[1];
        const [th, tw] = sizes[to];
        // a crop's rows depend on the tile row only, its columns on the tile column: the largest of each is a real tile
        const extent = (full: number, axis: 0 | 1): { start: number; end: number } => {
          let best = { start: 0, end: 0 };
          for (let a = 0; a < full; a += side) {
            const need = needFor(ops, sizes, from, to, [a, Math.min(full, a + side)], axis);
            const start = Math.floor(need[0] / den) * den;
            if (need[1] - start > best.end - best.start) best = { start, end: need[1] };
          }
          return best;
        };
        const rows = extent(th, 0),
          cols = extent(tw, 1);
        const cropShape = [B, channelsAt(ops, from, C), rows.end - rows.start, cols.end - cols.start];
        // a skip read from an earlier checkpoint: its crop on the device and on the host
        let skipBytes = 0;
        const skipCrop =
          pass.skip === undefined
            ? undefined
            : (r: Span, c: Span): DeviceTensor => {
                const shape = [B, channelsAt(ops, pass.skip!, C), r.end - r.start, c.end - c.start];
                skipBytes = shape.reduce((a, b) => a * b, 4);
                return ctx.alloc(shape);
              };
        const { out } = await runOps(
          ctx,
          ops,
          sizes,
          from,
          to,
          cropShape,
          null,
          rows.start,
          cols.start,
          affines,
          skipCrop,
        );
        const tileBytes = cropShape.reduce((a, b) => a * b, 4) + out.shape.reduce((a, b) => a * b, 4) + skipBytes;
        ctx.free(out);
        // the pass's work: its kernels over every tile as they compute (passCost), not just the largest tile's
        convMacs += passCost(ops, sizes, from, to, side);
        allocatedBytes += pass.tiles * tileBytes + (pass.kind === "form" ? bytesAt(to) : 0);
        // A stored checkpoint costs host memory only as the block a crop reads (its rows, every plane, one
        // block of columns; storing a band's block takes as much); one in memory costs its bytes until its
        // last pass, during which the source's rows above the crops go.
        const stored = (i: number) => options.storage !== undefined && (i > 0 || inputStored);
        const readRows = stored(from) ? cropShape[2] * B * channelsAt(ops, from, C) * STORED_BLOCK * 4 : 0;
        const others = [...inMemory].reduce((a, [i, b]) => a + (i === from ? 0 : b), 0);
        const sourceBytes = inMemory.get(from) ?? 0;
        let held = others + (stored(from) ? readRows : sourceBytes);
        if (pass.kind === "form") {
          const [sh] = sizes[from];
          const storesOut = options.storage !== undefined && to < ops.length;
          const last = lastUse.get(from) === k;
          // Row by row of tiles, the source's rows above the crop are dropped (in its last pass) while the
          // output's bands grow (with storage: only the band being formed is in memory).
          for (let y0 = 0; y0 < th; y0 += side) {
            const y1 = Math.min(th, y0 + side);
            const r0 = Math.floor(needFor(ops, sizes, from, to, [y0, y1], 0)[0] / den) * den;
            const source = stored(from) ? readRows : last ? (sourceBytes * (sh - r0)) / sh : sourceBytes;
            const band = (bytesAt(to) * (y1 - y0)) / th;
            if (to < ops.length) largestBand = Math.max(largestBand, band);
            const formed = storesOut ? band : to === ops.length ? bytesAt(to) : (bytesAt(to) * y1) / th;
            // storing a band goes through a buffer of one block of it
            const io = storesOut ? (band * Math.min(STORED_BLOCK, sizes[to][1])) / sizes[to][1] : 0;
            held = Math.max(held, others + source + formed + io);
          }
          for (const i of [...inMemory.keys()]) if ((lastUse.get(i) ?? -1) <= k) inMemory.delete(i);
          const outBytes = storesOut ? 0 : bytesAt(to);
          inMemory.set(to, outBytes);
          largestCheckpoint = Math.max(largestCheckpoint, outBytes);
        }
        // each tile's crop and result: freed at once where releaseHost can, else collected only every few tiles
        hostBytes = Math.max(hostBytes, held + (hostReleaseIsImmediate ? 1 : TILE_COPIES_UNCOLLECTED) * tileBytes);
      }
    } finally {
      for (const a of affines.values()) ctx.free(a.scale, a.shift);
    }
  };
  if (before.length) await segment(before, inputShape, options.tileSize);
  const middleShape = shapeAfter(before, inputShape);
  const middleBytes = middleShape.reduce((a, b) => a * b, 4);
  if (middle.length) {
    const t = ctx.alloc(middleShape);
    const m0 = macs();
    const m = await runProgram(ctx, middle, t, { progress: false });
    convMacs += macs() - m0;
    const outBytes = m.shape.reduce((a, b) => a * b, 4);
    hostBytes = Math.max(hostBytes, middleBytes + outBytes);
    ctx.free(t, m);
  }
  if (after.length)
    await segment(
      after,
      shapeAfter([...before, ...middle], inputShape),
      sideAt(options.tileSize, middleLevel),
      middle.length > 0,
    );
  return { hostBytes, convMacs, largestCheckpoint, largestBand, allocatedBytes };
}
