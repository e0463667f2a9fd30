#!/usr/bin/env node
// The `autoencoderkl` command line. Node only (it reads and writes files); everything it does goes
// through the library's public API, so it doubles as a worked example of that API.
import { readFileSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { AbortError, AutoencoderKLError } from "../index.js";
import { bench, type CommandContext, type CommandResult, decode, encode, info, roundtrip } from "./commands.js";
import { parseIsa, prepareIsa } from "./isa.js";
import { packageRoot, UsageError } from "./model.js";
import { ProgressBar } from "./progress.js";
import { inCliTerms } from "./wording.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

const SHARED: Options = {
  model: { type: "string", short: "m" },
  backend: { type: "string", short: "b" },
  threads: { type: "string", short: "t" },
  isa: { type: "string" },
  variant: { type: "string" },
  tile: { type: "boolean" },
  "tile-size": { type: "string" },
  exact: { type: "boolean" },
  "max-memory": { type: "string" },
  "weight-dtype": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

const IMAGE_IN: Options = { "max-pixels": { type: "string" } };
const OUTPUT: Options = { output: { type: "string", short: "o" }, force: { type: "boolean", short: "f" } };
const POSTERIOR: Options = { sample: { type: "boolean" }, seed: { type: "string" } };
const COMPONENTS: Options = { components: { type: "string" } };

const SHARED_HELP = `Shared options:
  -m, --model <dir|file|url>  diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors),
                              a single-file checkpoint, or a URL of either (default: the bundled demo model)
      --variant <name>        weights variant in a folder, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)
  -b, --backend <name>        auto (default), wasm, webgpu or reference
  -t, --threads <n>           worker threads for the wasm backend (default: CPU cores, at most 16)
      --isa <name>            wasm instruction set: auto (default: relaxed SIMD where the runtime has it;
                              on Node 20 the CLI turns V8's flag on itself), relaxed or simd
      --tile                  encode/decode in overlapping tiles (diffusers' tiling; less memory)
      --tile-size <px>        tile side in image pixels (implies --tile; default: the config's sample_size)
      --exact                 exact tiling: tiles with halos and whole-image GroupNorm statistics, the same
                              output as untiled (--tile alone gives diffusers' blended tiles and their seams)
      --weight-dtype <t>      f32 (default) or f16: keep conv and linear weights as f16 in memory (half the
                              bytes; the same outputs as f32 for f16 files, f32 files are rounded)
      --max-memory <MiB>      plan each encode/decode to stay under this process peak: untiled, or exact
                              tiling with the tile side and checkpoints that fit (overrides --tile/--exact);
                              an error says what would fit
      --json                  print one JSON result on stdout instead of text
  -h, --help                  show help`;

interface Command {
  run: (ctx: CommandContext) => Promise<CommandResult>;
  options: Options;
  usage: string;
}

const COMMANDS: Record<string, Command> = {
  roundtrip: {
    run: roundtrip,
    options: { ...SHARED, ...IMAGE_IN, ...POSTERIOR, ...OUTPUT, compare: { type: "string" } },
    usage: `Usage: autoencoderkl roundtrip [image] [-o out.png] [--compare side-by-side.png] [options]

Encodes an image (PNG or JPEG; default: the bundled photo) to the posterior's mode, decodes it, writes the
reconstruction and prints the PSNR and timings. Sides that are not multiples of 2^(levels-1) (8 for Stable
Diffusion VAEs) are padded by repeating edge pixels, and the result is cropped back. With the bundled demo
model the bundled photo comes back at 27.16 dB (PyTorch's figure with the same file).

  -o, --output <file>     reconstruction PNG (default: <image name>-roundtrip.png, never over an existing file)
  -f, --force             overwrite an existing file at the default output name
      --compare <file>    also write original | reconstruction | error heat map side by side
      --sample            decode a sample of the posterior instead of its mode
      --seed <n>          seed for --sample (default 0)
      --max-pixels <n>    refuse larger images (default 67108864, a decompression-bomb guard)`,
  },
  encode: {
    run: encode,
    options: { ...SHARED, ...IMAGE_IN, ...POSTERIOR, ...OUTPUT, ...COMPONENTS, raw: { type: "boolean" } },
    usage: `Usage: autoencoderkl encode <image> [-o latents.safetensors] [options]

Encodes an image to latents and stores them as the tensor "latents" [1, C, h, w] in a safetensors file.
By default the posterior's mean is stored, scaled as diffusers pipelines feed the denoiser:
(z − shift_factor) · scaling_factor (or per channel (z − latents_mean) · scaling_factor / latents_std
when the config has them). The file's __metadata__ records what was done, so \`decode\` can undo it.

  -o, --output <file>     latents file (default: <image name>.latents.safetensors, never over an existing file)
  -f, --force             overwrite an existing file at the default output name
      --sample            store a sample of the posterior instead of its mean
      --seed <n>          seed for --sample (default 0)
      --raw               store the latents unscaled
      --max-pixels <n>    refuse larger images (default 67108864)
      --components <c>    model half to load: encoder (default: only what encoding uses), decoder or both`,
  },
  decode: {
    run: decode,
    options: { ...SHARED, ...OUTPUT, ...COMPONENTS, raw: { type: "boolean" }, scaled: { type: "boolean" } },
    usage: `Usage: autoencoderkl decode <latents.safetensors> [-o image.png] [options]

Decodes the tensor "latents" (or the file's only tensor) to a PNG. Scaling is undone as the file's
metadata records (files written by \`encode\`); a file without that metadata is taken as raw latents.

  -o, --output <file>     image file (default: <latents name>.decoded.png, never over an existing file)
  -f, --force             overwrite an existing file at the default output name
      --scaled            the latents are scaled: undo it with the model config's factors
      --raw               decode the values as they are, whatever the metadata says
      --components <c>    model half to load: decoder (default: the encoder's weights are never read), encoder or both`,
  },
  info: {
    run: info,
    options: { ...SHARED, ...COMPONENTS, size: { type: "string", short: "s" } },
    usage: `Usage: autoencoderkl info [model] [--size 512|WxH] [options]

Prints the config, parameter count, weight dtypes, file size and the memory plan for encoding and decoding
one image of --size (default 512×512): untiled, or the tiling --tile/--exact ask for, or what the model
plans under --max-memory, with the predicted process peak and its parts. The model is a positional argument
or --model (default: the demo).

      --components <c>    count parameters and memory for one half: decoder, encoder or both (default)`,
  },
  bench: {
    run: bench,
    options: { ...SHARED, sizes: { type: "string" }, repeat: { type: "string" } },
    usage: `Usage: autoencoderkl bench [--sizes 256,512] [--repeat n] [options]

Times encode and decode of a synthetic image at each size with the loaded model (best of --repeat runs).`,
  },
};

function mainHelp(version: string): string {
  return `autoencoderkl ${version} — the Stable Diffusion VAE (diffusers' AutoencoderKL) on WebAssembly

Usage: autoencoderkl <command> [arguments] [options]

Commands:
  roundtrip [image]         encode + decode, write the reconstruction, print PSNR and timings
  encode <image>            image → latents.safetensors
  decode <latents>          latents.safetensors → image.png
  info [model]              config, parameters, dtypes, file size, peak-memory estimate
  bench                     time encode/decode at a few sizes

Try: npx autoencoderkl roundtrip --compare compare.png

${SHARED_HELP}

Without --model the bundled demo VAE runs (3.9 M parameters, made for this project to work offline);
for real results pass a Stable Diffusion VAE: a diffusers folder (e.g. the vae/ of an SD 1.5 or SDXL
repository) or an original single-file checkpoint.
Outputs never replace an existing file unless -o names it or --force is given; they appear whole or not at all.
Exit codes: 0 success, 1 bad input file or model, 2 bad arguments, 130 Ctrl-C (stops at once).
Run \`autoencoderkl <command> --help\` for a command's own options.`;
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(resolve(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

export interface CliStreams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** Runs the CLI; resolves to the exit code (it never calls process.exit, so it can be embedded). */
export async function main(
  argv: string[],
  streams: CliStreams = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const { stdout, stderr } = streams;
  const out = (s: string) => stdout.write(s + "\n");
  const err = (s: string) => stderr.write(s + "\n");
  const wantsJson = argv.includes("--json");
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) out(`${COMMANDS[topic].usage}\n\n${SHARED_HELP}`);
    else out(mainHelp(version()));
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    out(version());
    return 0;
  }
  const cmd = COMMANDS[name];
  const fail = (code: number, message: string, extra: Record<string, unknown> = {}) => {
    if (wantsJson) out(JSON.stringify({ ok: false, error: message, exitCode: code, ...extra }));
    err(`autoencoderkl: ${message}`);
    return code;
  };
  if (!cmd)
    return fail(
      2,
      `unknown command ${JSON.stringify(name)}; expected one of ${Object.keys(COMMANDS).join(", ")} (see --help)`,
    );

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: true, strict: true });
  } catch (e) {
    return fail(2, `${name}: ${(e as Error).message.split("\n")[0]}\n${cmd.usage.split("\n")[0]}`);
  }
  const options = parsed.values as CommandContext["options"];
  if (options.help) {
    out(`${cmd.usage}\n\n${SHARED_HELP}`);
    return 0;
  }
  const json = options.json === true;
  const bar = new ProgressBar(stderr);
  // No SIGINT handler while computing: kernels may run synchronously on this thread (one thread, reference
  // backend), where a handler would only run after the work is done. Node's default — exit at once, status
  // 130 in a shell — is what Ctrl-C should do, and it is safe: outputs are written to a temporary name and
  // renamed (output.ts, which removes the temporary file if Ctrl-C comes while it is being written).
  try {
    // before anything compiles WebAssembly: V8 reads its relaxed-SIMD flag when a module is compiled
    const isa = prepareIsa(parseIsa(options.isa as string | undefined));
    const result = await cmd.run({
      positionals: parsed.positionals,
      options,
      isa,
      log: json
        ? () => {}
        : (line) => {
            bar.clear();
            out(line);
          },
      warn: (line) => {
        bar.clear();
        err(`autoencoderkl: warning: ${inCliTerms(line)}`);
      },
      run: { onProgress: bar.update },
    });
    bar.clear();
    if (json) out(JSON.stringify({ ok: true, ...result }));
    return 0;
  } catch (e) {
    bar.clear();
    if (e instanceof UsageError) return fail(2, `${name}: ${e.message}\n${cmd.usage.split("\n")[0]}`);
    if (e instanceof AutoencoderKLError)
      return fail(1, inCliTerms(e.message), { source: e.source, rule: inCliTerms(e.rule) });
    if (e instanceof AbortError) return fail(130, "interrupted");
    // Anything else is our bug, not the user's: say so, with the stack for the report.
    return fail(1, `internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
}

/** True when this module is the program being run (node dist/cli/main.js), not an import. */
function isEntry(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return pathToFileURL(realpathSync(arg)).href === pathToFileURL(realpathSync(fileURLToPath(import.meta.url))).href;
  } catch {
    return false;
  }
}

if (isEntry()) {
  process.exitCode = await main(process.argv.slice(2));
}
