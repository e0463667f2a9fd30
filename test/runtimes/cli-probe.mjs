// The probe for runtimes with a file system (Node, Deno, Bun): loads the library from a package folder
// (dist/ next to build/), the demo model with fromPretrained (backend "auto", one thread) and the photo,
// and prints the result as base64 safetensors on one line.
// Usage: <runtime> cli-probe.mjs <package dist/index.js> <model folder> <photo.png>
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { probe } from "./probe.mjs";

const args = globalThis.Deno ? globalThis.Deno.args : process.argv.slice(2);
const [index, model, photo] = args;
const lib = await import(pathToFileURL(index).href);
const t0 = performance.now();
const vae = await lib.AutoencoderKL.fromPretrained(model, { threads: 1 });
const loadMs = performance.now() - t0;
const bytes = await probe(lib, vae, new Uint8Array(await readFile(photo)), { loadMs: loadMs.toFixed(0) });
vae.dispose();
let text = "";
for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
console.log(btoa(text));
