import { AutoencoderKLError } from "../../errors.js";
import { randn } from "../../tensor/random.js";
import { Tensor } from "../../tensor/tensor.js";

const LOG_2PI = Math.log(2 * Math.PI);

function sameShape(a: Tensor, b: Tensor, what: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new AutoencoderKLError(
      what,
      `shape [${b.shape.join(", ")}] does not match the distribution's [${a.shape.join(", ")}]`,
    );
  }
}

/** Sums `f(i)` over each batch item's C·H·W elements, in float64; returns a [B] tensor. */
function perBatch(shape: number[], f: (i: number) => number): Tensor {
  const b = shape[0];
  const per = shape.slice(1).reduce((x, y) => x * y, 1);
  const out = new Float32Array(b);
  for (let n = 0; n < b; n++) {
    let acc = 0;
    for (let i = n * per; i < (n + 1) * per; i++) acc += f(i);
    out[n] = acc;
  }
  return new Tensor(out, [b]);
}

/**
 * diffusers' DiagonalGaussianDistribution: the VAE posterior N(mean, exp(logvar)) per latent element.
 * logvar is clamped to [-30, 20] as diffusers does; std = exp(logvar / 2), var = exp(logvar).
 */
export class DiagonalGaussianDistribution {
  readonly mean: Tensor;
  readonly logvar: Tensor;
  readonly std: Tensor;
  readonly var: Tensor;
  readonly deterministic: boolean;

  constructor(mean: Tensor, logvar: Tensor, options: { deterministic?: boolean } = {}) {
    if (!(mean instanceof Tensor) || !(logvar instanceof Tensor)) {
      throw new AutoencoderKLError("DiagonalGaussianDistribution", "mean and logvar must be Tensors");
    }
    if (mean.rank < 1) throw new AutoencoderKLError("DiagonalGaussianDistribution.mean", "needs a batch dimension");
    sameShape(mean, logvar, "DiagonalGaussianDistribution.logvar");
    this.deterministic = options.deterministic ?? false;
    const lv = new Float32Array(logvar.size),
      std = new Float32Array(logvar.size),
      v = new Float32Array(logvar.size);
    for (let i = 0; i < lv.length; i++) {
      const l = Math.min(20, Math.max(-30, logvar.data[i]));
      lv[i] = l;
      std[i] = this.deterministic ? 0 : Math.exp(0.5 * l);
      v[i] = this.deterministic ? 0 : Math.exp(l);
    }
    this.mean = mean;
    this.logvar = new Tensor(lv, logvar.shape);
    this.std = new Tensor(std, logvar.shape);
    this.var = new Tensor(v, logvar.shape);
  }

  /** Splits [B, 2C, ...] moments (encoder output) into mean (first C channels) and logvar. */
  static fromMoments(moments: Tensor, options: { deterministic?: boolean } = {}): DiagonalGaussianDistribution {
    if (!(moments instanceof Tensor) || moments.rank < 2 || moments.shape[1] % 2 !== 0) {
      throw new AutoencoderKLError(
        "moments",
        `must be a Tensor [B, 2C, ...] with an even channel count, got shape [${moments?.shape?.join(", ")}]`,
      );
    }
    const [b, c2, ...rest] = moments.shape;
    const c = c2 / 2;
    const per = c * rest.reduce((x, y) => x * y, 1);
    const mean = new Float32Array(b * per),
      logvar = new Float32Array(b * per);
    for (let n = 0; n < b; n++) {
      mean.set(moments.data.subarray(n * 2 * per, n * 2 * per + per), n * per);
      logvar.set(moments.data.subarray(n * 2 * per + per, (n + 1) * 2 * per), n * per);
    }
    const shape = [b, c, ...rest];
    return new DiagonalGaussianDistribution(new Tensor(mean, shape), new Tensor(logvar, shape), options);
  }

  /** The most likely latent: the mean. */
  mode(): Tensor {
    return this.mean.clone();
  }

  /** mean + std · noise, with noise given or drawn from a seeded generator (see `randn`). */
  sample(options: { seed?: number; noise?: Tensor } = {}): Tensor {
    let noise: Float32Array;
    if (options.noise !== undefined) {
      if (!(options.noise instanceof Tensor)) throw new AutoencoderKLError("sample: noise", "must be a Tensor");
      sameShape(this.mean, options.noise, "sample: noise");
      noise = options.noise.data;
    } else {
      const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
      if (!Number.isSafeInteger(seed))
        throw new AutoencoderKLError("sample: seed", `must be a safe integer, got ${seed}`);
      noise = randn(this.mean.size, seed);
    }
    const out = new Float32Array(this.mean.size);
    for (let i = 0; i < out.length; i++) out[i] = this.mean.data[i] + this.std.data[i] * noise[i];
    return new Tensor(out, this.mean.shape);
  }

  /** KL divergence to N(0, 1), or to `other`, summed over all but the batch dimension: shape [B]. */
  kl(other?: DiagonalGaussianDistribution): Tensor {
    if (this.deterministic) return new Tensor(new Float32Array(this.mean.shape[0]), [this.mean.shape[0]]);
    const m = this.mean.data,
      v = this.var.data,
      lv = this.logvar.data;
    if (!other) return perBatch(this.mean.shape, (i) => 0.5 * (m[i] * m[i] + v[i] - 1 - lv[i]));
    if (!(other instanceof DiagonalGaussianDistribution))
      throw new AutoencoderKLError("kl: other", "must be a DiagonalGaussianDistribution");
    sameShape(this.mean, other.mean, "kl: other.mean");
    const om = other.mean.data,
      ov = other.var.data,
      olv = other.logvar.data;
    return perBatch(this.mean.shape, (i) => 0.5 * ((m[i] - om[i]) ** 2 / ov[i] + v[i] / ov[i] - 1 - lv[i] + olv[i]));
  }

  /** Negative log-likelihood of `sample`, summed over all but the batch dimension: shape [B]. */
  nll(sample: Tensor): Tensor {
    if (!(sample instanceof Tensor)) throw new AutoencoderKLError("nll: sample", "must be a Tensor");
    sameShape(this.mean, sample, "nll: sample");
    if (this.deterministic) return new Tensor(new Float32Array(this.mean.shape[0]), [this.mean.shape[0]]);
    const m = this.mean.data,
      v = this.var.data,
      lv = this.logvar.data,
      s = sample.data;
    return perBatch(this.mean.shape, (i) => 0.5 * (LOG_2PI + lv[i] + (s[i] - m[i]) ** 2 / v[i]));
  }
}
