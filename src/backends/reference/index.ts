import { AutoencoderKLError } from "../../errors.js";
import type {
  ActivationArgs, AddArgs, AttentionArgs, ChannelAffineArgs, Conv2dArgs, CopyArgs, DeviceBuffer, GroupNormArgs, Kernels, LinearArgs,
  MatmulArgs, SoftmaxArgs, TransposeArgs, Upsample2xArgs,
} from "../kernels.js";
import { activate } from "./activations.js";

/** A reference buffer is a plain Float32Array wrapper. */
class RefBuffer implements DeviceBuffer {
  constructor(public data: Float32Array) {}
  get length(): number {
    return this.data.length;
  }
}

function d(b: DeviceBuffer): Float32Array {
  if (!(b instanceof RefBuffer)) throw new AutoencoderKLError("reference backend", "buffer was not allocated by this backend");
  return b.data;
}

/**
 * Plain TypeScript kernels, written for obviousness, not speed: loops that read like the maths, with
 * float64 accumulation. They are the ground truth the SIMD and WGSL kernels are tested against.
 */
export class ReferenceKernels implements Kernels {
  readonly name = "reference" as const;
  readonly description = "reference (plain TypeScript, float64 accumulation)";

  alloc(length: number): DeviceBuffer {
    return new RefBuffer(new Float32Array(length));
  }
  free(buffer: DeviceBuffer): void {
    d(buffer);
  }
  write(buffer: DeviceBuffer, data: Float32Array, offset = 0): void {
    d(buffer).set(data, offset);
  }
  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    const a = d(buffer);
    return a.slice(0, length ?? a.length);
  }

  conv2d(p: Conv2dArgs): void {
    const x = d(p.x), w = d(p.weight), out = d(p.out);
    const bias = p.bias ? d(p.bias) : null, res = p.residual ? d(p.residual) : null;
    const { inChannels: C, inHeight: H, inWidth: W, outChannels: O, kernelH: KH, kernelW: KW, outHeight: OH, outWidth: OW } = p;
    for (let n = 0; n < p.batch; n++) {
      for (let o = 0; o < O; o++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            let acc = bias ? bias[o] : 0;
            for (let c = 0; c < C; c++) {
              for (let ky = 0; ky < KH; ky++) {
                const iy = oy * p.stride + ky - p.padTop;
                if (iy < 0 || iy >= H) continue;
                for (let kx = 0; kx < KW; kx++) {
                  const ix = ox * p.stride + kx - p.padLeft;
                  if (ix < 0 || ix >= W) continue;
                  acc += x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * KH + ky) * KW + kx];
                }
              }
            }
            const i = ((n * O + o) * OH + oy) * OW + ox;
            out[i] = res ? acc + res[i] : acc;
          }
        }
      }
    }
  }

  groupNorm(p: GroupNormArgs): void {
    const x = d(p.x), g = d(p.gamma), b = d(p.beta), out = d(p.out);
    const cpg = p.channels / p.groups, span = cpg * p.spatial;
    for (let n = 0; n < p.batch; n++) {
      for (let grp = 0; grp < p.groups; grp++) {
        const base = (n * p.channels + grp * cpg) * p.spatial;
        let sum = 0;
        for (let i = 0; i < span; i++) sum += x[base + i];
        const mean = sum / span;
        let sq = 0;
        for (let i = 0; i < span; i++) sq += (x[base + i] - mean) ** 2;
        const inv = 1 / Math.sqrt(sq / span + p.eps);
        for (let c = 0; c < cpg; c++) {
          const ch = grp * cpg + c;
          for (let s = 0; s < p.spatial; s++) {
            const i = base + c * p.spatial + s;
            out[i] = activate((x[i] - mean) * inv * g[ch] + b[ch], p.activation);
          }
        }
      }
    }
  }

  linear(p: LinearArgs): void {
    const x = d(p.x), w = d(p.weight), out = d(p.out), bias = p.bias ? d(p.bias) : null;
    for (let r = 0; r < p.rows; r++) {
      for (let o = 0; o < p.outFeatures; o++) {
        let acc = bias ? bias[o] : 0;
        for (let i = 0; i < p.inFeatures; i++) acc += x[r * p.inFeatures + i] * w[o * p.inFeatures + i];
        out[r * p.outFeatures + o] = acc;
      }
    }
  }

  matmul(p: MatmulArgs): void {
    const a = d(p.a), b = d(p.b), out = d(p.out);
    const { m, n, k } = p;
    for (let bt = 0; bt < p.batch; bt++) {
      const ao = bt * m * k, bo = bt * k * n, oo = bt * m * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let t = 0; t < k; t++) acc += a[ao + i * k + t] * (p.transposeB ? b[bo + j * k + t] : b[bo + t * n + j]);
          out[oo + i * n + j] = p.alpha * acc;
        }
      }
    }
  }

  softmax(p: SoftmaxArgs): void {
    const x = d(p.x), out = d(p.out);
    for (let r = 0; r < p.rows; r++) {
      const o = r * p.cols;
      let max = -Infinity;
      for (let j = 0; j < p.cols; j++) max = Math.max(max, x[o + j]);
      let sum = 0;
      const e = new Float64Array(p.cols);
      for (let j = 0; j < p.cols; j++) sum += e[j] = Math.exp(x[o + j] - max);
      for (let j = 0; j < p.cols; j++) out[o + j] = e[j] / sum;
    }
  }

  attention(p: AttentionArgs): void {
    const q = d(p.q), k = d(p.k), v = d(p.v), out = d(p.out);
    const { queries: NQ, keys: NK, dim: D } = p;
    const s = new Float64Array(NK);
    for (let bt = 0; bt < p.batch; bt++) {
      const qo = bt * NQ * D, ko = bt * NK * D;
      for (let i = 0; i < NQ; i++) {
        let max = -Infinity;
        for (let j = 0; j < NK; j++) {
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[qo + i * D + c] * k[ko + j * D + c];
          s[j] = acc * p.scale;
          if (s[j] > max) max = s[j];
        }
        let sum = 0;
        for (let j = 0; j < NK; j++) sum += s[j] = Math.exp(s[j] - max);
        for (let c = 0; c < D; c++) {
          let acc = 0;
          for (let j = 0; j < NK; j++) acc += s[j] * v[ko + j * D + c];
          out[qo + i * D + c] = acc / sum;
        }
      }
    }
  }

  add(p: AddArgs): void {
    const a = d(p.a), b = d(p.b), out = d(p.out);
    for (let i = 0; i < p.length; i++) out[i] = a[i] + b[i];
  }

  activation(p: ActivationArgs): void {
    const x = d(p.x), out = d(p.out);
    for (let i = 0; i < p.length; i++) out[i] = activate(x[i], p.activation);
  }

  upsampleNearest2x(p: Upsample2xArgs): void {
    const x = d(p.x), out = d(p.out);
    const { height: H, width: W } = p;
    for (let pl = 0; pl < p.planes; pl++) {
      for (let y = 0; y < 2 * H; y++) {
        for (let xx = 0; xx < 2 * W; xx++) out[(pl * 2 * H + y) * 2 * W + xx] = x[(pl * H + (y >> 1)) * W + (xx >> 1)];
      }
    }
  }

  transpose(p: TransposeArgs): void {
    const x = d(p.x), out = d(p.out);
    for (let bt = 0; bt < p.batch; bt++) {
      const o = bt * p.rows * p.cols;
      for (let r = 0; r < p.rows; r++) for (let c = 0; c < p.cols; c++) out[o + c * p.rows + r] = x[o + r * p.cols + c];
    }
  }

  channelAffine(p: ChannelAffineArgs): void {
    const x = d(p.x), out = d(p.out), scale = d(p.scale), shift = d(p.shift);
    for (let bc = 0; bc < p.batch * p.channels; bc++) {
      for (let s = 0; s < p.spatial; s++) {
        const i = bc * p.spatial + s;
        out[i] = activate(x[i] * scale[bc] + shift[bc], p.activation);
      }
    }
  }

  copy(p: CopyArgs): void {
    const x = d(p.x), out = d(p.out);
    for (let r = 0; r < p.rows; r++) {
      for (let c = 0; c < p.cols; c++) out[p.outOffset + r * p.outRowStride + c] = x[p.xOffset + r * p.xRowStride + c];
    }
  }

  dispose(): void {}
}
