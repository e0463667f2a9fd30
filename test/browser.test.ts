// The browser build in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): the
// example page runs a roundtrip on a crop of the demo photo, and a module Web Worker importing the same
// bundle decodes latents; both must agree with the library run here in Node.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoencoderKL } from "../src/index.js";
import { cropTo, padToMultiple, readImage, tensorToPixels } from "../src/io/image/index.js";
import { Tensor } from "../src/tensor/tensor.js";
import { type StaticServer, startStaticServer } from "./helpers/static-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const CROP = { width: 120, height: 88 };

let browser: Browser;
let isolated: StaticServer;
let plain: StaticServer;
let vae: AutoencoderKL;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  // Always test the current sources: the bundle takes well under a second to build.
  execFileSync(process.execPath, [fileURLToPath(new URL("../scripts/build-browser.mjs", import.meta.url))], {
    cwd: ROOT,
    stdio: "pipe",
  });
  isolated = await startStaticServer(ROOT, { isolated: true });
  plain = await startStaticServer(ROOT);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 });
  vae = await AutoencoderKL.fromPretrained(fileURLToPath(new URL("../assets/demo-vae", import.meta.url)), {
    backend: "wasm",
    threads: 2,
  });
});

afterAll(async () => {
  await browser?.close();
  await isolated?.close();
  await plain?.close();
  vae?.dispose();
});

/** Opens the example page; any uncaught page error fails the test that opened it. */
async function openDemo(server: StaticServer): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(`${server.url}examples/browser/index.html`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
  return { page, errors };
}

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  return 10 * Math.log10((255 * 255) / (se / a.length));
}

describe("browser build", () => {
  it("the example page runs a roundtrip (wasm, threads) with the PSNR Node gets", async () => {
    const { page, errors } = await openDemo(isolated);
    const result = (await page.evaluate(
      ({ crop }) =>
        (
          window as unknown as { demo: { roundtripUrl: (u: string, o: object) => Promise<Record<string, unknown>> } }
        ).demo.roundtripUrl((window as unknown as { demo: { DEMO_PHOTO: string } }).demo.DEMO_PHOTO, {
          crop,
          backend: "auto",
        }),
      { crop: CROP },
    )) as {
      psnr: number;
      backend: string;
      width: number;
      height: number;
      latentShape: number[];
      crossOriginIsolated: boolean;
    };

    // The same crop, same steps, in Node.
    const x = cropTo(
      readImage(readFileSync(new URL("../assets/chelsea.png", import.meta.url))),
      CROP.height,
      CROP.width,
    );
    const { latentDist } = await vae.encode(padToMultiple(x, 8));
    const y = cropTo((await vae.decode(latentDist.mode())).sample, CROP.height, CROP.width);
    const nodePsnr = psnr(tensorToPixels(x).pixels, tensorToPixels(y).pixels);

    expect(result).toMatchObject({
      backend: "wasm",
      width: CROP.width,
      height: CROP.height,
      latentShape: [1, 16, 11, 15],
      crossOriginIsolated: true,
    });
    expect(Math.abs(result.psnr - nodePsnr)).toBeLessThan(0.05);
    // The page drew the picture, the reconstruction and one small canvas per latent channel.
    expect(await page.locator("#latents canvas").count()).toBe(16);
    expect(await page.locator("#reconstruction").evaluate((c: HTMLCanvasElement) => [c.width, c.height])).toEqual([
      CROP.width,
      CROP.height,
    ]);
    expect(await page.textContent("#status")).toMatch(/PSNR \d+\.\d\d dB/);
    // A full progress bar; a heat map of the error the size of the picture, with its legend (scale 0 … ≥ 64 levels).
    expect(await page.locator("#progress").evaluate((p: HTMLProgressElement) => p.value)).toBe(1);
    expect(await page.locator("#heatmap").evaluate((c: HTMLCanvasElement) => [c.width, c.height])).toEqual([
      CROP.width,
      CROP.height,
    ]);
    expect(await page.locator("#legend").isVisible()).toBe(true);
    expect(await page.locator("#legend-ticks span").allTextContents()).toEqual(["0", "16", "32", "48", "≥ 64"]);
    expect(await page.textContent("#legend")).toMatch(/8-bit levels/);
    // Threads, and why: this server sends COOP/COEP.
    expect(await page.textContent("#threads")).toMatch(/wasm \(.*\d+ threads?\): this page is cross-origin isolated/);
    // The kernels came from the package's build/ (the build rewrites the backend's default URL for dist/browser/).
    expect(isolated.requests.some((r) => /^\/build\/kernels-(simd|relaxed)\.wasm$/.test(r))).toBe(true);
    expect(isolated.requests).toContain("/assets/demo-vae/diffusion_pytorch_model.safetensors");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("changing the backend cancels the run in flight cleanly: no stale pictures, no disposed-backend error, the next run works", async () => {
    const { page, errors } = await openDemo(plain);
    // A run of seconds (the whole photo, wasm on one thread here) that is still going when the backend changes.
    const pending = page.evaluate(() => {
      const d = (
        window as unknown as { demo: { roundtripUrl: (u: string, o: object) => Promise<unknown>; DEMO_PHOTO: string } }
      ).demo;
      return d.roundtripUrl(d.DEMO_PHOTO, { backend: "wasm" });
    });
    // Event-driven: wait until the encoder has reported progress, then switch.
    await page.waitForFunction(
      () => (document.getElementById("progress") as HTMLProgressElement).value > 0,
      undefined,
      { timeout: 60_000 },
    );
    await page.evaluate(() =>
      (window as unknown as { demo: { setBackend: (b: string) => void } }).demo.setBackend("auto"),
    );
    const result = (await pending) as { cancelled?: boolean; reason?: string };
    expect(result).toEqual({ cancelled: true, reason: "the backend changed to auto" });
    expect(await page.textContent("#status")).toBe("Cancelled: the backend changed to auto.");
    expect(await page.locator("#latents canvas").count()).toBe(0);
    const blank = await page.locator("#reconstruction").evaluate((c: HTMLCanvasElement) => {
      const d = c.getContext("2d")!.getImageData(0, 0, Math.max(1, c.width), Math.max(1, c.height)).data;
      return d.every((v) => v === 0);
    });
    expect(blank).toBe(true);
    expect(await page.locator("#progress").evaluate((p: HTMLProgressElement) => p.value)).toBe(0);
    // The next run, on the new backend (a new model: the old one was disposed once its run had stopped), completes.
    const next = (await page.evaluate(
      ({ crop }) => {
        const d = (
          window as unknown as {
            demo: { roundtripUrl: (u: string, o: object) => Promise<unknown>; DEMO_PHOTO: string };
          }
        ).demo;
        return d.roundtripUrl(d.DEMO_PHOTO, { crop });
      },
      { crop: CROP },
    )) as { backend: string; psnr: number };
    expect(next.backend).toBe("wasm");
    expect(next.psnr).toBeGreaterThan(15);
    // Not isolated: the page says why there is one thread.
    expect(await page.textContent("#threads")).toMatch(
      /1 thread\): this page is not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin.*Cross-Origin-Embedder-Policy: require-corp.*serve\.mjs/,
    );
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it("the README's server (examples/browser/serve.mjs) makes the page cross-origin isolated, so the kernels get threads", async () => {
    const server: ChildProcess = spawn(process.execPath, ["examples/browser/serve.mjs", "0"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const url = await new Promise<string>((res, rej) => {
        let out = "";
        server.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /(http:\/\/\S+)/.exec(out);
          if (m) res(m[1]);
        });
        server.on("exit", (code) => rej(new Error(`serve.mjs exited (${code}): ${out}`)));
      });
      const page = await browser.newPage();
      await page.goto(url);
      await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
      const r = (await page.evaluate(
        ({ crop }) => {
          const d = (
            window as unknown as {
              demo: { roundtripUrl: (u: string, o: object) => Promise<unknown>; DEMO_PHOTO: string };
            }
          ).demo;
          return d.roundtripUrl(d.DEMO_PHOTO, { crop, backend: "wasm" });
        },
        { crop: CROP },
      )) as { crossOriginIsolated: boolean; backendDescription: string };
      expect(r.crossOriginIsolated).toBe(true);
      const cores = await page.evaluate(() => navigator.hardwareConcurrency);
      const threads = Number(/(\d+) threads?/.exec(r.backendDescription)?.[1]);
      expect(threads, r.backendDescription).toBeLessThanOrEqual(cores);
      if (cores > 1) expect(threads, r.backendDescription).toBeGreaterThan(1);
      await page.close();
    } finally {
      server.kill();
    }
  }, 120_000);

  it("the same bundle runs in a module Web Worker (no cross-origin isolation: one thread) and decodes as Node does", async () => {
    const { page, errors } = await openDemo(plain);
    const shape = [1, 16, 4, 6];
    const latents = new Float32Array(16 * 4 * 6).map((_, i) => Math.sin(i * 0.37) * 1.5);
    const reply = (await page.evaluate(
      ({ latents, shape }) =>
        (window as unknown as { demo: { inWorker: (m: object) => Promise<unknown> } }).demo.inWorker({
          latents,
          shape,
          backend: "wasm",
        }),
      { latents: Array.from(latents), shape },
    )) as { backend: string; shape: number[]; data: Record<string, number> | number[]; inWorker: boolean };
    expect(reply).toMatchObject({ backend: "wasm", shape: [1, 3, 32, 48], inWorker: true });
    const got = Float32Array.from(Object.values(reply.data));
    const want = (await vae.decode(new Tensor(latents, shape))).sample.data;
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    expect(maxDiff).toBeLessThan(2e-3);
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
  });
});
