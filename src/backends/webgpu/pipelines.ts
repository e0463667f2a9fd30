/// <reference types="@webgpu/types" preserve="true" />
import { AutoencoderKLError } from "../../errors.js";
import type { Recorder } from "./recorder.js";
import { buildShader, type KernelDef } from "./shaders.js";

const STAGE_COMPUTE = 0x4;

export interface Pipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/**
 * Compiled pipelines by kernel variant: the kernel's name, which bindings share a buffer (roots) and the
 * storage type. Compiled on first use, or ahead of time with warmup().
 */
export class PipelineCache {
  private readonly pipelines = new Map<string, Pipeline>();

  constructor(
    private readonly device: GPUDevice,
    private readonly f16: boolean,
    private readonly recorder: Recorder,
  ) {}

  get(def: KernelDef, roots: number[], writable: boolean[]): Pipeline {
    const key = this.key(def, roots);
    let p = this.pipelines.get(key);
    if (p) return p;
    p = this.recorder.scoped("validation", () => {
      const { layout, desc } = this.parts(def, roots, writable);
      return { pipeline: this.device.createComputePipeline(desc), layout };
    });
    this.pipelines.set(key, p);
    return p;
  }

  /** Compiles the variants with createComputePipelineAsync, so first use does not stall on compilation. */
  async warmup(variants: readonly [KernelDef, number[]][]): Promise<void> {
    await Promise.all(
      variants.map(async ([d, roots]) => {
        const key = this.key(d, roots);
        if (this.pipelines.has(key)) return;
        const writable = d.bindings.map(
          (b, i) => !!b.write || roots.some((r, j) => r === roots[i] && (d.bindings[j].write ?? false)),
        );
        const { layout, desc } = this.parts(d, roots, writable);
        try {
          const pipeline = await this.device.createComputePipelineAsync(desc);
          this.pipelines.set(key, { pipeline, layout });
        } catch (e) {
          throw new AutoencoderKLError("webgpu warmup", `compiling ${d.name} failed: ${(e as Error).message}`, {
            cause: e,
          });
        }
      }),
    );
  }

  clear(): void {
    this.pipelines.clear();
  }

  private key(def: KernelDef, roots: readonly number[]): string {
    return `${def.name}|${roots.join(",")}|${this.f16 ? "h" : "f"}`;
  }

  private parts(
    def: KernelDef,
    roots: readonly number[],
    writable: readonly boolean[],
  ): { layout: GPUBindGroupLayout; desc: GPUComputePipelineDescriptor } {
    const dev = this.device;
    const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: STAGE_COMPUTE, buffer: { type: "uniform" } }];
    roots.forEach((r, i) => {
      if (r === i)
        entries.push({
          binding: i + 1,
          visibility: STAGE_COMPUTE,
          buffer: { type: writable[i] ? "storage" : "read-only-storage" },
        });
    });
    const layout = dev.createBindGroupLayout({ entries });
    const module = dev.createShaderModule({ code: buildShader(def, roots, writable, this.f16), label: def.name });
    return {
      layout,
      desc: {
        layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main" },
        label: def.name,
      },
    };
  }
}
