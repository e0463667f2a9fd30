// Types for probe.mjs (plain JavaScript, so every runtime runs the same file).
import type { AutoencoderKL, Tensor } from "../../src/index.js";

export const LATENT_SHAPE: number[];
export const CROP: { height: number; width: number };
export function fixedLatent(T: typeof Tensor, shape?: number[], seed?: number): Tensor;
export function instructionSetOf(description: string): string;
export function probe(
  lib: unknown,
  vae: AutoencoderKL,
  png: Uint8Array,
  metadata?: Record<string, string>,
): Promise<Uint8Array>;
