// Node-only helpers (`import { demoModelPath } from "autoencoderkl/node"`): kept out of the core import,
// which must stay free of Node built-ins so it bundles for browsers, Workers and edge runtimes.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AutoencoderKLError } from "./errors.js";

/** assets/ of the installed package: beside src/ (sources) and dist/ (compiled) alike. */
function asset(rel: string): string {
  const path = fileURLToPath(new URL(`../assets/${rel}`, import.meta.url));
  if (!existsSync(path)) throw new AutoencoderKLError(path, "bundled asset missing (a broken install?)");
  return path;
}

/**
 * The folder of the bundled demo VAE (a diffusers folder: config.json + F16 safetensors, 3.9 M
 * parameters, 16 latent channels; see assets/README.md). For trying the library offline, not for
 * Stable Diffusion latents: `AutoencoderKL.fromPretrained(demoModelPath())`.
 */
export function demoModelPath(): string {
  return asset("demo-vae");
}

/** The bundled CC0 demo photo (chelsea.png, 448×296). */
export function demoImagePath(): string {
  return asset("chelsea.png");
}

export { fileCheckpointStorage } from "./io/checkpoint-files.js";
