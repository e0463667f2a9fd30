import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { readSafetensors } from "../../src/io/safetensors.js";
import type { Tensor } from "../../src/tensor/tensor.js";

export const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));

export interface FixtureCase {
  name: string;
  model: string;
  load: { variant?: string; single_file?: boolean; flax?: boolean };
  op: "encode" | "decode" | "forward" | "posterior";
  options: { tiling?: boolean; sample_posterior?: boolean };
  inputs: string[];
  expected: string[];
  file: string;
  tolerance: { max_abs: number; rel_l2: number };
  note: string;
}

export interface FixtureModel {
  path: string;
  format: string;
  config: Record<string, unknown>;
  weights?: Record<string, string>;
  single_file?: { path: string; dtype: string; prefix: string };
  malicious?: string;
}

export interface Manifest {
  models: Record<string, FixtureModel>;
  cases: FixtureCase[];
}

export const manifest: Manifest = JSON.parse(readFileSync(FIXTURES + "manifest.json", "utf8"));

/** Reads a case file into { input: {x, z, ...}, expected: {...} }. */
export function loadCase(c: FixtureCase): { input: Record<string, Tensor>; expected: Record<string, Tensor> } {
  const { tensors } = readSafetensors(new Uint8Array(readFileSync(FIXTURES + c.file)), c.file);
  const input: Record<string, Tensor> = {},
    expected: Record<string, Tensor> = {};
  for (const [k, t] of tensors) {
    const [kind, name] = k.split(".");
    (kind === "input" ? input : expected)[name] = t;
  }
  return { input, expected };
}

/** max |got - expected| and ||got - expected|| / ||expected||, after checking shapes agree. */
export function compare(got: Tensor, expected: Tensor): { maxAbs: number; relL2: number } {
  if (got.shape.join(",") !== expected.shape.join(",")) {
    throw new Error(`shape [${got.shape}] != expected [${expected.shape}]`);
  }
  let maxAbs = 0,
    num = 0,
    den = 0;
  for (let i = 0; i < got.size; i++) {
    const d = got.data[i] - expected.data[i];
    if (!(Math.abs(d) <= maxAbs)) maxAbs = Math.abs(d); // NaN propagates as a failure
    num += d * d;
    den += expected.data[i] ** 2;
  }
  return { maxAbs, relL2: Math.sqrt(num) / Math.sqrt(den || 1) };
}
