/**
 * The memory budget (`maxMemoryMiB`): before any work, pick untiled or exact tiling — and for exact tiling
 * the tile side and the checkpoint budget — so the predicted peak stays under the budget, choosing the
 * least work among the plans that fit; or say what would fit.
 *
 * The prediction adds up what the process holds: an allowance for the JavaScript runtime and the wasm
 * workers, the resident weights, the backend's working set and the host arrays the model keeps (input,
 * output, exact tiling's checkpoints and tile copies). The working set is not estimated from formulas: the
 * model's own code runs on a memory probe (memory-probe.ts) that places every allocation as the wasm
 * backend would.
 */
import type { Kernels } from "../../backends/kernels.js";
import { AutoencoderKLError } from "../../errors.js";
import { RunContext } from "../../nn/context.js";
import { type Program, runProgram } from "../../nn/program.js";
import { type CheckpointStorage, hostReleaseIsImmediate, probeExact } from "./exact-tiling.js";
import { ProbeKernels } from "./memory-probe.js";

const MiB = 2 ** 20;

/**
 * The JavaScript runtime's own resident memory once the library has loaded a model and decoded (code, JIT,
 * heaps, what the allocator keeps after loading), measured on x64 as peak RSS minus the wasm high-water mark:
 * an SD-1.x decoder loaded from an fp16 folder then decoded untiled, Node 22, 2 threads: 97 MiB; a small model
 * 70 / 85 / 107 MiB with 1 / 2 / 4 threads (Node 20: 58 / 71 / 87). Each wasm worker is an isolate of its own.
 */
export function runtimeAllowanceBytes(threads: number): number {
  return (84 + 13 * Math.max(0, threads - 1)) * MiB;
}

/** Host arrays of exact tiling counted with this margin (see exact()). */
const HOST_MARGIN = 1.2;
/**
 * With checkpoints in files, what the process keeps resident besides the live arrays and the runtime: at 512²
 * under 400 MiB, 19 to 26 MiB over the prediction without this in four runs (Node 22); malloc's (pinning its
 * mmap threshold removed ~50 MiB, at twice the time). Reusing the tiler's host arrays did not reduce it.
 */
const STORED_RETENTION = 32 * MiB;
/** Host memory a collector that runs late can leave unreturned (see exact()). */
const GC_LAG = 96 * MiB;
/** The probe places blocks as the allocator does, but not after a previous run's holes: a small margin. */
const MARGIN = 1.05;

/** Exact tiling candidates: tile sides at the program input (latent pixels for decode) and checkpoint budgets. */
const TILE_SIDES = [64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2];
const CHECKPOINT_MIB = [256, 128, 64, 32, 16, 0];

export interface MemoryPlan {
  /**
   * What runs: the whole tensor at once, exact tiling (same output as untiled), or diffusers' blended tiles
   * (enableTiling's default mode, which the planner never chooses but predicts when it is set).
   */
  mode: "untiled" | "exact" | "blend";
  /** Exact mode: tile side at the input's resolution (latent pixels for decode, image pixels for encode). */
  tileSize: number | null;
  /** Exact mode: the largest intermediate kept on the host as a checkpoint, MiB (null: every one, in the checkpoint storage). */
  checkpointMiB: number | null;
  /** Exact mode: checkpoints go to the model's `checkpointStorage` (e.g. temporary files) instead of memory. */
  storedCheckpoints: boolean;
  /** Exact mode: a resnet's middle is kept too, so no pass recomputes its first convolution (see planExact). */
  resnetCheckpoints: boolean;
  /** Predicted peak of the process, MiB, and its parts. */
  peakMiB: number;
  parts: { runtimeMiB: number; weightsMiB: number; workingMiB: number; hostMiB: number };
  /** Convolution work relative to the untiled run (≥ 1: exact tiling recomputes halos and statistics passes). */
  workRatio: number;
  /** The budget planned for (null: none, the untiled plan). */
  budgetMiB: number | null;
}

export interface PlanInputs {
  kernels: Kernels;
  program: Program;
  inputShape: readonly number[];
  /** Bytes of the resident weights. */
  weightsBytes: number;
  /** Bytes the runtime itself holds (runtimeAllowanceBytes). */
  runtimeBytes: number;
  /** Smallest exact tile side allowed and its granularity at the input's resolution (encode: a multiple of the downscale factor). */
  tileUnit: number;
  /** Where checkpoints may go instead of memory (the model's checkpointStorage option). */
  storage?: CheckpointStorage;
}

export function checkBudget(value: unknown, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0)
    throw new AutoencoderKLError(what, `must be a positive number of MiB, got ${JSON.stringify(value)}`);
  return value;
}

const round = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

function plan(
  inputs: PlanInputs,
  mode: MemoryPlan["mode"],
  working: number,
  host: number,
  macs: number,
  untiledMacs: number,
  budgetMiB: number | null,
  tileSize: number | null = null,
  checkpointMiB: number | null = null,
  storedCheckpoints = false,
  resnetCheckpoints = false,
): MemoryPlan {
  const parts = {
    runtimeMiB: round(inputs.runtimeBytes),
    weightsMiB: round(inputs.weightsBytes),
    workingMiB: round(working * MARGIN),
    hostMiB: round(host),
  };
  return {
    mode,
    tileSize,
    checkpointMiB,
    storedCheckpoints,
    resnetCheckpoints,
    peakMiB: round(inputs.runtimeBytes + inputs.weightsBytes + working * MARGIN + host),
    parts,
    workRatio: untiledMacs > 0 ? Math.round((macs / untiledMacs) * 100) / 100 : 1,
    budgetMiB,
  };
}

/** The untiled plan's prediction. */
async function untiled(
  inputs: PlanInputs,
  shape: readonly number[] = inputs.inputShape,
): Promise<{ working: number; host: number; macs: number }> {
  const probe = new ProbeKernels(inputs.kernels);
  const ctx = new RunContext(probe, "plan", 0);
  const x = ctx.alloc([...shape]);
  const out = await runProgram(ctx, inputs.program, x, { progress: false });
  const bytes = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 4);
  // host: the caller's input and the output read back
  return { working: probe.highWater, host: bytes(inputs.inputShape) + bytes(out.shape), macs: probe.convMacs };
}

async function exact(
  inputs: PlanInputs,
  tileSize: number,
  checkpointMiB: number | null,
  resnetCheckpoints = true,
): Promise<{ working: number; host: number; macs: number }> {
  const probe = new ProbeKernels(inputs.kernels);
  const ctx = new RunContext(probe, "plan", 0);
  const fp = await probeExact(
    ctx,
    inputs.program,
    inputs.inputShape,
    checkpointMiB === null
      ? { tileSize, checkpointBytes: Number.POSITIVE_INFINITY, storage: inputs.storage, resnetCheckpoints }
      : { tileSize, checkpointBytes: checkpointMiB * MiB, resnetCheckpoints },
    () => probe.convMacs,
  );
  const inBytes = inputs.inputShape.reduce((a, b) => a * b, 4);
  // Without ArrayBuffer.prototype.transfer (Node 20) dropped bands wait for the collector, which V8 runs once
  // external memory has grown by about 64 MiB: up to that much more (measured: ~90 MiB at 512², 256-MiB checkpoints).
  // Stored checkpoints leave garbage too: every band stored, crop and tile result, as much as the run allocates
  // up to the collector's lag (measured at 512², files, Node 20: 76 MiB over the prediction without this).
  const garbage = hostReleaseIsImmediate
    ? 0
    : checkpointMiB === null
      ? Math.min(GC_LAG, fp.allocatedBytes)
      : Math.min(GC_LAG, fp.largestCheckpoint);
  // Freed host arrays are not all returned to the system (malloc keeps blocks the size of the largest band
  // resident), and the probe's count of live arrays ran 20% short at 1024² (bench/memory-budget.mjs samples).
  // (no more than the tiler's own arrays at their peak: a small model's tiles leave little behind)
  const retained = checkpointMiB === null ? Math.min(STORED_RETENTION, fp.hostBytes) : 0;
  const host = (inBytes + fp.hostBytes) * HOST_MARGIN + fp.largestBand + garbage + retained;
  return { working: probe.highWater, host, macs: fp.convMacs };
}

/**
 * The prediction for tiling the model was told to use (enableTiling): exact tiling with its tile side and
 * checkpoint budget, or blended tiles of `tileSize` (each tile run untiled; the input and output whole on the host).
 */
export async function predictTiling(
  inputs: PlanInputs,
  tiling: { mode: "exact" | "blend"; tileSize: number; checkpointMiB: number },
): Promise<MemoryPlan> {
  const u = await untiled(inputs);
  if (tiling.mode === "exact") {
    const ck = inputs.storage ? null : tiling.checkpointMiB;
    const e = await exact(inputs, tiling.tileSize, ck);
    return plan(inputs, "exact", e.working, e.host, e.macs, u.macs, null, tiling.tileSize, ck, ck === null, true);
  }
  const [b, c] = inputs.inputShape;
  const t = await untiled(inputs, [b, c, tiling.tileSize, tiling.tileSize]);
  // blended tiles overlap by a quarter: about (4/3)² of the untiled work; the tiles' outputs are kept for blending
  return plan(inputs, "blend", t.working, u.host * 2, u.macs * (16 / 9), u.macs, null, tiling.tileSize, null);
}

/**
 * The plan for one run of `program` on an input of `inputShape` under `budgetMiB` (null: untiled, predicted).
 * Throws AutoencoderKLError naming the smallest plan when nothing fits.
 */
export async function planMemory(inputs: PlanInputs, budgetMiB: number | null, what: string): Promise<MemoryPlan> {
  const u = await untiled(inputs);
  const base = plan(inputs, "untiled", u.working, u.host, u.macs, u.macs, budgetMiB);
  if (budgetMiB === null || base.peakMiB <= budgetMiB) return base;
  const [, , h, w] = inputs.inputShape;
  const sides = TILE_SIDES.map((s) => s * inputs.tileUnit).filter((s) => s < Math.max(h, w));
  let best: MemoryPlan | null = null;
  let smallest: MemoryPlan = base;
  // in memory first: at equal work a stored plan only adds file traffic
  const budgets: (number | null)[] = inputs.storage ? [...CHECKPOINT_MIB, null] : CHECKPOINT_MIB;
  for (const side of sides) {
    for (const ck of budgets) {
      // resnet checkpoints cut work and add one checkpoint alive: without them where they do not fit
      for (const resnets of [true, false]) {
        const e = await exact(inputs, side, ck, resnets);
        const p = plan(inputs, "exact", e.working, e.host, e.macs, u.macs, budgetMiB, side, ck, ck === null, resnets);
        if (p.peakMiB < smallest.peakMiB) smallest = p;
        if (p.peakMiB <= budgetMiB && (!best || p.workRatio < best.workRatio)) best = p;
        if (p.peakMiB <= budgetMiB) break;
      }
    }
  }
  if (best) return best;
  const describe = (p: MemoryPlan) =>
    `${p.mode === "exact" ? `exact tiling, ${p.tileSize}-px tiles, ${p.storedCheckpoints ? "checkpoints stored" : `checkpointMiB ${p.checkpointMiB}`}` : "untiled"}: ` +
    `${p.peakMiB} MiB (runtime ${p.parts.runtimeMiB}, weights ${p.parts.weightsMiB}, working set ${p.parts.workingMiB}, host ${p.parts.hostMiB})`;
  throw new AutoencoderKLError(
    what,
    `maxMemoryMiB ${budgetMiB} is too small for an input of [${inputs.inputShape.join(", ")}]: the smallest plan is ${describe(smallest)}; untiled is ${describe(base)}. Raise the budget to at least ${Math.ceil(smallest.peakMiB)} MiB` +
      (inputs.weightsBytes > 0 ? ', or shrink the weights (weightDtype: "f16", components: one half)' : "") +
      (inputs.storage ? "" : ", or give the model a checkpointStorage (fileCheckpointStorage() in Node)"),
  );
}
