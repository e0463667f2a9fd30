/**
 * A backend that computes nothing and counts memory: it runs the model's own code paths (the eager program,
 * a tile of the exact tiler) with every allocation placed by the same first-fit allocator the wasm backend
 * uses, so the planner reads the working set — fragmentation and the kernels' scratch included — instead of
 * estimating it from formulas that drift from the code.
 */
import type { DeviceBuffer, Kernels, MaybePromise } from "../../backends/kernels.js";
import { FreeListAllocator } from "../../backends/wasm/allocator.js";
import type { KernelExports, WasmRuntime, WasmStep } from "../../backends/wasm/runtime.js";
import { AutoencoderKLError } from "../../errors.js";
import type { Conv2dArgs } from "../../ops/conv2d.js";
import type { Op } from "../../ops/op.js";
import { installOps, type OpMethods } from "../../ops/registry.js";

class ProbeBuffer implements DeviceBuffer {
  constructor(
    readonly offset: number,
    readonly length: number,
    readonly bytes: number,
    readonly dtype: "f32" | "f16" = "f32",
  ) {}
}

/** What the wasm backend lends the probe: its kernels' pure size functions and its dispatch settings. */
interface WasmSizing {
  ex: KernelExports;
  winogradMinChannels: number;
  winogradTile: WasmRuntime["winogradTile"];
  upsamplePhases: WasmRuntime["upsamplePhases"];
  threads: number;
}

function wasmSizing(k: Kernels): WasmSizing | null {
  const w = k as Partial<WasmSizing> & Kernels;
  return k.name === "wasm" && w.ex && typeof w.winogradMinChannels === "number"
    ? {
        ex: w.ex,
        winogradMinChannels: w.winogradMinChannels,
        winogradTile: w.winogradTile ?? "auto",
        upsamplePhases: w.upsamplePhases ?? "auto",
        threads: w.threads ?? 1,
      }
    : null;
}

// the op methods, installed below from the registry
export interface ProbeKernels extends OpMethods {}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the op methods are declared by the interface of the same name, built from the op registry, and installed on the prototype
export class ProbeKernels implements Kernels {
  readonly name;
  readonly description = "memory probe";
  /** Highest byte any block has reached: the working set's footprint in linear memory. */
  highWater = 0;
  /** Multiply-adds of the convolutions run so far (a work estimate for ranking plans). */
  convMacs = 0;
  private readonly allocator = new FreeListAllocator(0, 2 ** 48);
  private scratch: ProbeBuffer | null = null;
  private readonly sizing: WasmSizing | null;

  /** Probes for `model`'s backend: with the wasm backend, its kernels' scratch is allocated as the wasm backend does. */
  constructor(model: Kernels) {
    this.name = model.name;
    this.sizing = wasmSizing(model);
  }

  alloc(length: number): DeviceBuffer {
    return this.place(length, 4);
  }

  allocHalf(length: number): DeviceBuffer {
    return this.place(length, 2);
  }

  private place(length: number, size: 2 | 4): ProbeBuffer {
    const bytes = length * size;
    const offset = this.allocator.alloc(bytes);
    if (offset < 0) throw new AutoencoderKLError("memory probe", `cannot place ${bytes} bytes`);
    this.highWater = Math.max(this.highWater, offset + FreeListAllocator.blockSize(bytes));
    return new ProbeBuffer(offset, length, bytes, size === 2 ? "f16" : "f32");
  }

  free(buffer: DeviceBuffer): void {
    const b = buffer as ProbeBuffer;
    this.allocator.free(b.offset, b.bytes);
  }

  write(): void {}
  writeHalf(): void {}

  /** Zeros of the right length: the host copy a real read would make (untouched pages cost no memory). */
  async read(buffer: DeviceBuffer, length?: number): Promise<Float32Array> {
    return new Float32Array(length ?? buffer.length);
  }

  dispose(): void {}

  /** The wasm backend's scratch: one block, replaced by a larger one when an op needs more (WasmKernels.scratchPtr). */
  scratchFor(bytes: number): void {
    if (this.scratch && this.scratch.bytes >= bytes) return;
    if (this.scratch) this.free(this.scratch);
    this.scratch = this.alloc(Math.ceil(Math.max(bytes, 16) / 4)) as ProbeBuffer;
  }

  /** @internal a WasmRuntime whose `run` only sizes the scratch (the op's own code picks the kernels). */
  runtime(): WasmRuntime | null {
    const s = this.sizing;
    if (!s) return null;
    return {
      ex: s.ex,
      winogradMinChannels: s.winogradMinChannels,
      winogradTile: s.winogradTile,
      upsamplePhases: s.upsamplePhases,
      ptr: () => 0,
      run: (_steps: readonly WasmStep[], _costNs: number, scratch?: (nt: number) => number): MaybePromise => {
        // the largest thread count the op could be split over: the scratch grows with it
        if (scratch) this.scratchFor(scratch(s.threads));
      },
    };
  }
}

installOps(
  ProbeKernels.prototype,
  (op: Op<unknown>) =>
    function (this: ProbeKernels, args: unknown): MaybePromise {
      if (op.name === "conv2d") {
        const p = args as Conv2dArgs;
        this.convMacs += p.batch * p.outChannels * p.outHeight * p.outWidth * p.inChannels * p.kernelH * p.kernelW;
      }
      const rt = this.runtime();
      if (rt) return op.wasm(rt, args);
    },
);
