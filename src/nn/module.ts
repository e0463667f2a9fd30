import type { DeviceBuffer, Kernels } from "../backends/kernels.js";
import { AutoencoderKLError } from "../errors.js";
import { shapeSize } from "../tensor/tensor.js";

/** A named weight: `key` is its diffusers state-dict key. Lives in backend memory once loaded. */
export class Parameter {
  buf: DeviceBuffer | null = null;
  /** The loaded values on the host too, for parameters that host code reads (GroupNorm's γ/β in exact tiling). */
  host: Float32Array | null = null;
  constructor(
    readonly key: string,
    readonly shape: number[],
    /** Keep a host copy when loading (small parameters only). */
    readonly retainHost = false,
  ) {}
  get size(): number {
    return shapeSize(this.shape, this.key);
  }
  /** The loaded buffer; a forward pass before loading is a programming error, reported by key. */
  get value(): DeviceBuffer {
    if (!this.buf) throw new AutoencoderKLError(this.key, "parameter used before weights were loaded");
    return this.buf;
  }
  /** The host copy (retainHost parameters). */
  get hostValue(): Float32Array {
    if (!this.host)
      throw new AutoencoderKLError(this.key, "parameter has no host copy (not loaded, or not retainHost)");
    return this.host;
  }
}

/**
 * Base of every layer. A module is built with its key prefix (e.g. "encoder.down_blocks.0"), so
 * each parameter's key is its diffusers state-dict key and loading is a walk over `parameters()`.
 */
export abstract class Module {
  protected readonly children: Module[] = [];
  protected readonly params: Parameter[] = [];

  constructor(readonly prefix: string) {}

  protected key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  protected param(name: string, shape: number[], retainHost = false): Parameter {
    const p = new Parameter(this.key(name), shape, retainHost);
    this.params.push(p);
    return p;
  }

  protected child<M extends Module>(m: M): M {
    this.children.push(m);
    return m;
  }

  /** Drops a child (e.g. when fused projections replace separate ones). */
  protected removeChild(m: Module): void {
    const i = this.children.indexOf(m);
    if (i >= 0) this.children.splice(i, 1);
  }

  *parameters(): Generator<Parameter> {
    yield* this.params;
    for (const c of this.children) yield* c.parameters();
  }

  *modules(): Generator<Module> {
    yield this;
    for (const c of this.children) yield* c.modules();
  }

  /** Frees every loaded parameter buffer. */
  release(k: Kernels): void {
    for (const p of this.parameters()) {
      if (p.buf) k.free(p.buf);
      p.buf = null;
      p.host = null;
    }
  }
}
