import { AutoencoderKLError } from "../../errors.js";

/**
 * Splitting one op into dispatches that each respect the device limits. An op names its iteration dims
 * (e.g. conv: batch, out channels, out rows, in channels) and a set of monotone constraints on the chunk
 * sizes: the element span each binding covers must fit maxStorageBufferBindingSize, and the workgroup
 * count must fit the (folded) grid. `planChunks` halves dims until every constraint holds, each step
 * picking the dim that removes the most excess; ties go to the earlier dim, so ops list the dims that are
 * cheap to split first (splitting a reduction dim costs an extra read-modify-write of the output).
 */
export interface Constraint {
  readonly what: string;
  readonly size: (s: readonly number[]) => number;
  readonly limit: number;
}

export function planChunks(op: string, extents: readonly number[], constraints: readonly Constraint[]): number[] {
  const s = extents.map((e) => Math.max(1, e));
  const excess = (t: readonly number[]): number => {
    let e = 0;
    for (const c of constraints) e += Math.max(0, c.size(t) / c.limit - 1);
    return e;
  };
  let cur = excess(s);
  while (cur > 0) {
    let best = -1;
    let bestExcess = cur;
    for (let d = 0; d < s.length; d++) {
      if (s[d] <= 1) continue;
      const t = s.slice();
      t[d] = Math.ceil(s[d] / 2);
      const e = excess(t);
      if (e < bestExcess) {
        best = d;
        bestExcess = e;
      }
    }
    if (best < 0) {
      const bad = constraints
        .filter((c) => c.size(s) > c.limit)
        .map((c) => `${c.what} needs ${c.size(s)} > ${c.limit}`);
      throw new AutoencoderKLError(
        `webgpu ${op}`,
        `cannot split the op to fit the device limits even at its smallest chunk (${bad.join("; ")})`,
      );
    }
    s[best] = Math.ceil(s[best] / 2);
    cur = bestExcess;
  }
  return s;
}

/** Every chunk (start and count per dim) in lexicographic order, so reduction chunks run in increasing order. */
export function* chunks(
  extents: readonly number[],
  sizes: readonly number[],
): Generator<{ start: number[]; count: number[] }> {
  const start = extents.map(() => 0);
  if (extents.some((e) => e <= 0)) return;
  for (;;) {
    yield { start: start.slice(), count: start.map((s0, d) => Math.min(sizes[d], extents[d] - s0)) };
    let d = extents.length - 1;
    for (; d >= 0; d--) {
      start[d] += sizes[d];
      if (start[d] < extents[d]) break;
      start[d] = 0;
    }
    if (d < 0) return;
  }
}

/** Grid for `groups` workgroups under a per-dimension limit: x first, then y, then z. */
export function foldGrid(groups: number, maxPerDim: number): [number, number, number] {
  const x = Math.min(groups, maxPerDim);
  const y = Math.min(Math.ceil(groups / x), maxPerDim);
  const z = Math.ceil(groups / (x * y));
  return [x, y, z];
}
