// What a larger Winograd tile would cost in rounding, before anyone writes its kernel: F(m×m, 3×3) for
// m = 2, 4, 6, 8 modelled in float32 (every operation rounded with Math.fround) against a float64 direct
// convolution, next to a float32 direct one. Needs no build: it models the arithmetic, not our kernels.
//
//   node bench/winograd-tiles.mjs [--channels 512] [--outputs 16] [--tiles 32]
//
// The model follows the F(4×4) kernel (assembly/winograd4.ts) step by step, so its F(4×4) row can be checked
// against `node bench/winograd.mjs --error` (the real kernel):
// - U = G g Gᵀ in float64, rounded to float32 once (the packs round once);
// - V = Bᵀ d B in float32, each product and sum rounded, zero coefficients skipped;
// - M = Σ_c U ⊙ V as fused multiply-adds (relaxed SIMD): F(4×4) in partial sums of 32 channels added in turn
//   (its KC), F(2×2) as one running sum (as winograd.ts does), F(6×6) and F(8×8) as F(4×4);
// - Y = Aᵀ M A in float32.
// Data as in winograd.mjs --error: x ~ N(0, 1), weights ~ N(0, 1/(9C)) (outputs of unit variance).
// The transform matrices come from the interpolation points (Toom-Cook): Aᵀ evaluates at them, G likewise for
// the kernel, Bᵀ is the inverse Vandermonde's transpose; each row of Bᵀ is scaled to small dyadic numbers
// (exact in float32) and the matching row of G by the inverse; where no such scale exists (F(8×8): points 4 and
// -1/4 bring factors of 3 and 5), the row's entries are rounded to float32, which the row marks.

import { parseArgs, randn } from "./common.mjs";

const args = parseArgs(process.argv.slice(2));
const option = (name, fallback) => {
  const value = args[name] === undefined ? fallback : Number(args[name]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: a positive integer, got ${args[name]}`);
  return value;
};
const C = option("channels", 512);
const OUTPUTS = option("outputs", 16);
const TILES = option("tiles", 32);
const fr = Math.fround;

/** Tiles to model: m, the finite interpolation points (∞ is the last point of each), channels per partial sum. */
const VARIANTS = [
  { name: "F(2×2) (winograd.ts)", m: 2, points: [0, 1, -1], kc: C },
  { name: "F(4×4) (winograd4.ts)", m: 4, points: [0, 1, -1, 2, -0.5], kc: 32 },
  { name: "F(6×6)", m: 6, points: [0, 1, -1, 2, -2, 0.5, -0.5], kc: 32 },
  { name: "F(8×8)", m: 8, points: [0, 1, -1, 2, -2, 0.5, -0.5, 4, -0.25], kc: 32 },
];

function inverse(M) {
  const n = M.length;
  const a = M.map((row, i) => [...row, ...row.map((_, j) => +(i === j))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    const d = a[c][c];
    for (let j = 0; j < 2 * n; j++) a[c][j] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r][c];
      for (let j = 0; j < 2 * n; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.map((row) => row.slice(n));
}

const transpose = (M) => M[0].map((_, j) => M.map((row) => row[j]));

/** Aᵀ (m×n), G (n×3), Bᵀ (n×n) of F(m, 3) on these points plus ∞. */
function transforms(m, points) {
  const n = m + 2;
  const powers = (x, count) => Array.from({ length: count }, (_, i) => x ** i);
  const atInfinity = (count) => Array.from({ length: count }, (_, i) => +(i === count - 1));
  const vandermonde = [...points.map((x) => powers(x, n)), atInfinity(n)];
  const BT = transpose(inverse(vandermonde));
  const G = [...points.map((x) => powers(x, 3)), atInfinity(3)];
  const AT = transpose([...points.map((x) => powers(x, m)), atInfinity(m)]);
  let rounded = false;
  for (let j = 0; j < n; j++) {
    const scale = 1 / Math.min(...BT[j].filter((x) => Math.abs(x) > 1e-12).map(Math.abs));
    BT[j] = BT[j].map((x) => {
      const q = Math.round(x * scale * 256) / 256;
      if (Math.abs(q - x * scale) <= 1e-9) return q;
      rounded = true;
      return fr(x * scale);
    });
    G[j] = G[j].map((x) => x / scale);
  }
  return { n, AT, G, BT, rounded };
}

/** L·X (L constant), rounding each product and sum to float32 when f32. */
function product(L, X, f32) {
  const round = f32 ? fr : (x) => x;
  return L.map((row) =>
    X[0].map((_, j) => {
      let s = null;
      row.forEach((c, k) => {
        if (c === 0) return;
        const t = round(c * X[k][j]);
        s = s === null ? t : round(s + t);
      });
      return s ?? 0;
    }),
  );
}

function model({ m, points, kc }) {
  const { n, AT, G, BT, rounded } = transforms(m, points);
  const A = transpose(AT),
    GT = transpose(G),
    B = transpose(BT);
  let maxErr = 0,
    sumSq = 0,
    count = 0,
    maxDirect = 0,
    sumSqDirect = 0,
    sumSqY = 0;
  let seed = 1;
  for (let t = 0; t < TILES; t++) {
    const xs = randn(C * n * n, seed++);
    const d = Array.from({ length: C }, (_, c) =>
      Array.from({ length: n }, (_, i) => Array.from(xs.subarray((c * n + i) * n, (c * n + i + 1) * n))),
    );
    const V = d.map((dc) => product(product(BT, dc, true), B, true));
    for (let o = 0; o < OUTPUTS; o++) {
      const ws = randn(C * 9, 1000 * (t + 1) + o, Math.sqrt(1 / (9 * C)));
      const g = Array.from({ length: C }, (_, c) =>
        [0, 1, 2].map((i) => Array.from(ws.subarray(c * 9 + 3 * i, c * 9 + 3 * i + 3))),
      );
      const U = g.map((gc) => product(product(G, gc, false), GT, false).map((row) => row.map(fr)));
      const M = Array.from({ length: n }, (_, i) =>
        Array.from({ length: n }, (_, j) => {
          let total = 0;
          for (let c0 = 0; c0 < C; c0 += kc) {
            let s = 0;
            for (let c = c0; c < Math.min(C, c0 + kc); c++) s = fr(U[c][i][j] * V[c][i][j] + s);
            total = c0 === 0 ? s : fr(total + s);
          }
          return total;
        }),
      );
      const Y = product(product(AT, M, true), A, true);
      for (let y = 0; y < m; y++) {
        for (let x = 0; x < m; x++) {
          let exact = 0,
            direct = 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < 3; ky++) {
              for (let kx = 0; kx < 3; kx++) {
                const p = g[c][ky][kx] * d[c][y + ky][x + kx];
                exact += p;
                direct = fr(p + direct);
              }
            }
          }
          const e = Math.abs(Y[y][x] - exact),
            ed = Math.abs(direct - exact);
          maxErr = Math.max(maxErr, e);
          maxDirect = Math.max(maxDirect, ed);
          sumSq += e * e;
          sumSqDirect += ed * ed;
          sumSqY += exact * exact;
          count++;
        }
      }
    }
  }
  const rms = (s) => Math.sqrt(s / count);
  return { n, rounded, count, maxErr, rms: rms(sumSq), maxDirect, rmsDirect: rms(sumSqDirect), rmsY: rms(sumSqY) };
}

console.log(`${C} → ${OUTPUTS} channels, ${TILES} tiles each; errors against a float64 direct convolution`);
console.log(
  "| tile | multiplies per output (direct 9) | outputs | max error | rms error | float32 direct: max / rms |",
);
console.log("|---|---|---|---|---|---|");
for (const v of VARIANTS) {
  const r = model(v);
  const e = (x) => x.toExponential(2);
  console.log(
    `| ${v.name}, points ${v.points.join(", ")}, ∞${r.rounded ? " (Bᵀ rounded)" : ""} | ${((r.n * r.n) / (v.m * v.m)).toFixed(2)} | ${r.count} | ${e(r.maxErr)} | ${e(r.rms)} | ${e(r.maxDirect)} / ${e(r.rmsDirect)} |`,
  );
}
