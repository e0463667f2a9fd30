import type { Activation } from "../backends/kernels.js";

/** erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), enough for exact-form GELU in f32. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

/** softplus as PyTorch computes it inside Mish (linear above 20). */
function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

export function activate(x: number, activation: Activation): number {
  switch (activation) {
    case "none":
      return x;
    case "silu":
      return x / (1 + Math.exp(-x));
    case "mish":
      return x * Math.tanh(softplus(x));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "relu":
      return x > 0 ? x : 0;
  }
}
