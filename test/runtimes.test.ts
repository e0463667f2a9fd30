// The library in every JavaScript runtime it promises: Deno, Bun, Node 22 and 24 (from files, backend
// "auto"), Vercel's edge-runtime with WebAssembly code generation disabled and Cloudflare's workerd
// (miniflare) — both with the kernels handed in as precompiled modules. Each loads the demo model,
// decodes a fixed latent and encodes a crop of the photo (test/runtimes/probe.mjs); the numbers must match
// this Node's on the same instruction set within 1e-5. Binaries come from the pinned devDependencies
// (and tools/node for Node 22/24); a missing one skips its test with the reason printed, and fails it in CI.
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EdgeRuntime } from "edge-runtime";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWasmBackend } from "../src/backends/wasm/index.js";
import { AutoencoderKL, cropTo, readImage, Tensor, writePng, writeSafetensors } from "../src/index.js";
import { enableRelaxedSimd } from "./helpers/relaxed-simd.js";
import {
  bundle,
  DEMO,
  findBun,
  findDeno,
  findMiniflareNode,
  findNode,
  freshPackage,
  itWith,
  maxProbeDiff,
  nodeReference,
  PHOTO,
  type ProbeResult,
  packageAliases,
  ROOT,
  readProbe,
  run,
  scratch,
} from "./helpers/runtimes.js";
import { startStaticServer } from "./helpers/static-server.js";
import { fixedLatent } from "./runtimes/probe.mjs";

const TOLERANCE = 1e-5;
const PROBE = join(ROOT, "test", "runtimes", "cli-probe.mjs");

let tmp: ReturnType<typeof scratch>;
let pkg: { index: string };

beforeAll(async () => {
  tmp = scratch("runtimes");
  pkg = await freshPackage(tmp.dir);
  // relaxed SIMD for the whole process (Node 20 has it behind a flag): edge-runtime runs in this process
  enableRelaxedSimd();
});

afterAll(() => tmp?.cleanup());

/** Checks a runtime's probe result against Node's on the instruction set the runtime reports. */
async function expectMatchesNode(got: ProbeResult, runtime: string): Promise<void> {
  const isa = got.metadata.instructionSet;
  const want = await nodeReference(isa);
  const diff = maxProbeDiff(got, want);
  console.log(`${runtime}: ${got.metadata.backend}; max |Δ| vs Node ${process.version} = ${diff.toExponential(2)}`);
  expect(diff).toBeLessThanOrEqual(TOLERANCE);
}

async function cliProbe(cmd: string, args: string[], runtime: string): Promise<ProbeResult & { stderr: string }> {
  const r = await run(cmd, [...args, PROBE, pkg.index, DEMO, PHOTO], {
    cwd: tmp.dir,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
  if (r.code !== 0) throw new Error(`${runtime} exited ${r.code}: ${r.stderr}`);
  console.log(`${runtime}: probe ran in ${(r.ms / 1000).toFixed(1)} s`);
  return { ...readProbe(new Uint8Array(Buffer.from(r.stdout.toString("utf8").trim(), "base64"))), stderr: r.stderr };
}

describe("runtimes with a file system: fromPretrained(folder), backend auto", () => {
  itWith(
    findDeno(),
    "Deno: same numbers as Node, and nothing on stderr (no GPU probe without a GPU device)",
    async (deno) => {
      // read access to /dev lets the library look for GPU device nodes; there are none on CI machines
      const got = await cliProbe(
        deno,
        [
          "run",
          "--no-config",
          "--no-prompt",
          `--allow-read=${tmp.dir},${join(ROOT, "assets")},${join(ROOT, "test")},/dev`,
        ],
        "Deno",
      );
      expect(got.metadata.backend).toMatch(/^wasm /);
      expect(got.stderr).toBe("");
      await expectMatchesNode(got, "Deno");
    },
  );

  itWith(findBun(), "Bun: same numbers as Node, nothing on stderr", async (bun) => {
    const got = await cliProbe(bun, [], "Bun");
    expect(got.metadata.backend).toMatch(/^wasm /);
    expect(got.stderr).toBe("");
    await expectMatchesNode(got, "Bun");
  });

  for (const major of [22, 24]) {
    itWith(findNode(major), `Node ${major}: same numbers as this Node (relaxed SIMD without a flag)`, async (node) => {
      const got = await cliProbe(node, [], `Node ${major}`);
      expect(got.metadata.instructionSet).toBe("relaxed-simd"); // on by default from Node 22
      expect(got.stderr).toBe("");
      await expectMatchesNode(got, `Node ${major}`);
    });
  }
});

describe("runtimes without a file system or code generation: kernels passed in as modules", () => {
  it("edge-runtime (Vercel Edge), WebAssembly code generation disabled: compiling is refused, wasmModule runs", async () => {
    const code = await bundle(join(ROOT, "test", "runtimes", "embedded.mjs"), "iife", "__probe");
    // no eval, no WebAssembly compilation: as Vercel's hosted Edge (edge-runtime's default still allows wasm)
    const edge = new EdgeRuntime({ codeGeneration: { strings: false, wasm: false } });
    edge.evaluate(code);
    const api = edge.context.__probe as {
      loadWithout(config: unknown, options?: object): Promise<{ name: string; message: string } | null>;
      runProbe(input: object, metadata?: object): Promise<Uint8Array>;
    };
    expect(() => edge.evaluate("new Function('return 1')")).toThrow(/Code generation from strings disallowed/);
    await expect(edge.evaluate("WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))")).rejects.toThrow(
      /disallowed/,
    );
    const config = JSON.parse(readFileSync(join(DEMO, "config.json"), "utf8"));

    // no module URL in a script: an AutoencoderKLError that names the options, not a TypeError
    const noLocation = await api.loadWithout(config);
    expect(noLocation?.name).toBe("AutoencoderKLError");
    expect(noLocation?.message).toMatch(/cannot locate the kernels.*wasmModule.*wasmBytes.*wasmUrl/);
    // bytes cannot be compiled here, and the error says what to do instead
    const fromBytes = await api.loadWithout(config, {
      wasmBytes: new Uint8Array(readFileSync(join(ROOT, "build", "kernels-simd.wasm"))),
    });
    expect(fromBytes?.name).toBe("AutoencoderKLError");
    expect(fromBytes?.message).toMatch(/code generation disallowed.*pass wasmModule/i);

    // precompiled here (as the platform does at deploy time), run there
    const simd = new WebAssembly.Module(readFileSync(join(ROOT, "build", "kernels-simd.wasm")));
    const relaxed = new WebAssembly.Module(readFileSync(join(ROOT, "build", "kernels-relaxed.wasm")));
    const input = {
      config,
      weights: new Uint8Array(readFileSync(join(DEMO, "diffusion_pytorch_model.safetensors"))),
      png: new Uint8Array(readFileSync(PHOTO)),
    };
    const both = readProbe(new Uint8Array(await api.runProbe({ ...input, wasmModule: { simd, relaxed } })));
    expect(both.metadata.instructionSet).toBe("relaxed-simd"); // the engine validates it (flag on in this process)
    await expectMatchesNode(both, "edge-runtime, { simd, relaxed }");
    const one = readProbe(new Uint8Array(await api.runProbe({ ...input, wasmModule: simd })));
    expect(one.metadata.instructionSet).toBe("simd");
    await expectMatchesNode(one, "edge-runtime, simd Module");
  });

  itWith(
    findMiniflareNode(),
    "workerd (Cloudflare Workers, miniflare): kernels imported as compiled modules, model from the assets binding",
    async (node) => {
      const dir = join(tmp.dir, "workerd-probe");
      mkdirSync(dir);
      writeFileSync(join(dir, "worker.mjs"), await bundle(join(ROOT, "test", "runtimes", "workerd-probe.mjs"), "esm"));
      for (const f of ["kernels-simd.wasm", "kernels-relaxed.wasm"]) copyFileSync(join(ROOT, "build", f), join(dir, f));
      copyFileSync(join(ROOT, "build", "kernels-simd.wasm"), join(dir, "kernels-simd.bin"));
      const out = join(dir, "probe.safetensors");
      const r = await run(node, [
        join(ROOT, "test", "runtimes", "workerd-host.mjs"),
        dir,
        join(ROOT, "assets"),
        "probe",
        out,
      ]);
      if (r.code !== 0) throw new Error(`workerd host exited ${r.code}: ${r.stderr}`);
      console.log(`workerd: probe ran in ${(r.ms / 1000).toFixed(1)} s`);
      const report = JSON.parse(r.stdout.toString("utf8").trim().split("\n").pop()!);
      // the Worker has no import.meta.url to find build/ from, and may not compile bytes
      expect(report.without.noLocation).toMatchObject({ name: "AutoencoderKLError" });
      expect(report.without.noLocation.message).toMatch(/cannot locate the kernels.*wasmModule/);
      expect(report.without.fromBytes).toMatchObject({ name: "AutoencoderKLError" });
      expect(report.without.fromBytes.message).toMatch(/code generation disallowed.*pass wasmModule/i);
      const got = readProbe(new Uint8Array(readFileSync(out)));
      await expectMatchesNode(got, "workerd");
    },
  );
});

/** What the Deno and Bun examples do (encode, decode the mode), here in Node on the same instruction set. */
async function nodeRoundtrip(png: Uint8Array, isa: string): Promise<Uint8Array> {
  const kernels = await createWasmBackend({ relaxed: isa === "relaxed-simd", threads: 1 });
  const vae = await AutoencoderKL.fromPretrained(DEMO, { kernels });
  try {
    const { latentDist } = await vae.encode(await readImage(png));
    return await writePng((await vae.decode(latentDist.mode())).sample);
  } finally {
    vae.dispose();
    kernels.dispose();
  }
}

/** Runs an example's main.js on a 64×96 crop of the photo; its PNG must be the one Node makes. */
async function checkExample(cmd: string, args: string[], name: string, cwd: string): Promise<void> {
  const input = join(tmp.dir, `${name}-in.png`),
    output = join(tmp.dir, `${name}-out.png`);
  const png = await writePng(cropTo(await readImage(new Uint8Array(readFileSync(PHOTO))), 64, 96));
  writeFileSync(input, png);
  const r = await run(cmd, [...args, DEMO, input, output], {
    cwd,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
  if (r.code !== 0) throw new Error(`${name} example exited ${r.code}: ${r.stderr}`);
  const line = r.stdout.toString("utf8").trim();
  console.log(`examples/${name}: ${line}`);
  expect(line).toMatch(/^wasm \((relaxed-)?simd, \d+ threads?\): 96×64 → latents \[1, 16, 8, 12\]/);
  expect(r.stderr).toBe("");
  const isa = /relaxed-simd/.test(line) ? "relaxed-simd" : "simd";
  const got = await readImage(new Uint8Array(readFileSync(output)));
  const want = await readImage(await nodeRoundtrip(png, isa));
  // one 8-bit step at most (Bun's relaxed multiply-add is not fused, so a value may round the other way)
  let max = 0;
  for (let i = 0; i < want.data.length; i++) max = Math.max(max, Math.abs(got.data[i] - want.data[i]));
  expect(got.shape).toEqual(want.shape);
  expect(max).toBeLessThanOrEqual(2 / 255 + 1e-6);
}

describe("the Deno and Bun examples", () => {
  itWith(findDeno(), "examples/deno/main.js (autoencoderkl mapped to this build)", async (deno) => {
    const map = join(tmp.dir, "import_map.json");
    writeFileSync(map, JSON.stringify({ imports: { autoencoderkl: new URL(`file://${pkg.index}`).href } }));
    const readable = [tmp.dir, join(ROOT, "assets"), join(ROOT, "examples")].join(",");
    await checkExample(
      deno,
      [
        "run",
        "--no-config",
        "--no-prompt",
        `--import-map=${map}`,
        `--allow-read=${readable}`,
        `--allow-write=${tmp.dir}`,
        join(ROOT, "examples", "deno", "main.js"),
      ],
      "deno",
      tmp.dir,
    );
  });

  itWith(findBun(), "examples/bun/main.js (autoencoderkl installed as this build)", async (bun) => {
    // a project folder as `bun install` leaves it: node_modules/autoencoderkl is the package (with its package.json)
    const app = join(tmp.dir, "bun-app");
    mkdirSync(join(app, "node_modules"), { recursive: true });
    copyFileSync(join(ROOT, "package.json"), join(tmp.dir, "package.json"));
    symlinkSync(tmp.dir, join(app, "node_modules", "autoencoderkl"), "dir");
    copyFileSync(join(ROOT, "examples", "bun", "main.js"), join(app, "main.js"));
    copyFileSync(join(ROOT, "examples", "bun", "package.json"), join(app, "package.json"));
    await checkExample(bun, [join(app, "main.js")], "bun", app);
  });
});

describe("the edge examples", () => {
  it("examples/vercel-edge runs in edge-runtime without code generation: POSTed latents → the PNG Node makes", async () => {
    // `?module` imports (Vercel compiles them at deploy time) become modules compiled here and handed in
    const r = await build({
      entryPoints: [join(ROOT, "examples", "vercel-edge", "api", "decode.js")],
      bundle: true,
      format: "iife",
      globalName: "__example",
      write: false,
      platform: "browser",
      target: "es2022",
      logLevel: "error",
      plugins: [
        {
          name: "wasm-module-imports",
          setup(b) {
            b.onResolve({ filter: /^autoencoderkl\/kernels-(simd|relaxed)\.wasm\?module$/ }, (a) => ({
              path: a.path,
              namespace: "kernels",
            }));
            b.onLoad({ filter: /.*/, namespace: "kernels" }, (a) => ({
              contents: `export default globalThis.__kernels[${JSON.stringify(/kernels-(\w+)/.exec(a.path)![1])}];`,
            }));
          },
        },
        packageAliases,
      ],
    });
    const site = join(tmp.dir, "vercel-public");
    mkdirSync(join(site, "model"), { recursive: true });
    for (const f of ["config.json", "diffusion_pytorch_model.safetensors"])
      copyFileSync(join(DEMO, f), join(site, "model", f));
    const server = await startStaticServer(site, { maxRequests: 20, idleMs: 60_000 });
    try {
      const edge = new EdgeRuntime({ codeGeneration: { strings: false, wasm: false } });
      edge.context.__kernels = {
        simd: new WebAssembly.Module(readFileSync(join(ROOT, "build", "kernels-simd.wasm"))),
        relaxed: new WebAssembly.Module(readFileSync(join(ROOT, "build", "kernels-relaxed.wasm"))),
      };
      edge.evaluate(r.outputFiles[0].text);
      const handler = (edge.context.__example as { default: (req: unknown) => Promise<Response> }).default;
      const z = fixedLatent(Tensor, [1, 16, 8, 8], 7);
      const post = (body: Uint8Array) =>
        handler(
          new (edge.context.Request as typeof Request)(new URL("api/decode", server.url), {
            method: "POST",
            body: body as BodyInit,
          }),
        );

      const res = await post(writeSafetensors({ latents: z }));
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("image/png");
      const backend = res.headers.get("x-backend")!;
      expect(backend).toMatch(/^wasm \((relaxed-)?simd, 1 thread\)$/);
      const got = new Uint8Array(await res.arrayBuffer());
      const kernels = await createWasmBackend({ relaxed: backend.includes("relaxed"), threads: 1 });
      const vae = await AutoencoderKL.fromPretrained(DEMO, { kernels });
      const want = await writePng((await vae.decode(z)).sample);
      vae.dispose();
      kernels.dispose();
      expect(Buffer.compare(Buffer.from(got), Buffer.from(want))).toBe(0);
      expect(server.requests).toContain("/model/diffusion_pytorch_model.safetensors");

      const bad = await post(writeSafetensors({ other: z }));
      expect(bad.status).toBe(400);
      expect(await bad.text()).toMatch(/needs a tensor "latents"/);
    } finally {
      await server.close();
    }
  });
});
