// Runs a bundled module Worker in workerd through miniflare (which needs Node >= 22, so the test starts
// this file with such a Node). Usage: node workerd-host.mjs <dir with worker.mjs> <assets dir> <mode> [args]
//   probe <out file>   GET / → the probe's safetensors written to <out file>; GET /without-module → JSON
//   load <spec.json>   the load test: see runLoad below
// Prints one JSON line with what it found; exits non-zero on failure. Listens on 127.0.0.1 only.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Miniflare } from "miniflare";

const [dir, assets, mode, arg] = process.argv.slice(2);

function workerdPid() {
  // miniflare starts workerd as a child of this process
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === process.pid && stat.includes("(workerd)")) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

/** VmRSS and VmHWM (peak) of a process, in MiB, or null off Linux. */
function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    return { rssMiB: kb("VmRSS") / 1024, peakMiB: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

// Listed by hand: miniflare's import scanner stops at the library's dynamic import(variable)s (Node-only
// paths, never taken in a Worker). Modules are named by their path relative to `dir`.
const TYPES = { ".mjs": "ESModule", ".wasm": "CompiledWasm", ".bin": "Data" };
const modules = readdirSync(dir)
  .filter((f) => TYPES[f.slice(f.lastIndexOf("."))])
  .sort((a, b) => (a === "worker.mjs" ? -1 : b === "worker.mjs" ? 1 : a.localeCompare(b)))
  .map((f) => ({ type: TYPES[f.slice(f.lastIndexOf("."))], path: join(dir, f) }));

const mf = new Miniflare({
  modulesRoot: dir,
  modules,
  compatibilityDate: "2025-09-01",
  assets: { directory: assets, binding: "ASSETS", routerConfig: { has_user_worker: true } },
  host: "127.0.0.1",
  port: 0,
  // the load test reads the Worker isolate's heap through the V8 inspector (loopback only)
  ...(mode === "load" ? { inspectorPort: 0 } : {}),
});

try {
  const url = await mf.ready;
  if (mode === "probe") {
    const res = await mf.dispatchFetch(new URL("/", url));
    if (!res.ok) throw new Error(`probe: HTTP ${res.status}: ${await res.text()}`);
    writeFileSync(arg, new Uint8Array(await res.arrayBuffer()));
    const without = await (await mf.dispatchFetch(new URL("/without-module", url))).json();
    console.log(JSON.stringify({ without, workerd: memoryOf(workerdPid()) }));
  } else if (mode === "load") {
    console.log(JSON.stringify(await runLoad(url, JSON.parse(readFileSync(arg, "utf8")))));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await mf.dispose();
}

/**
 * spec: { index: the library's dist/index.js (to compare pixels), bodies: [latents files], expected:
 * { [instruction set]: [PNG files, one per body] }, big: { body, expected }, requests, concurrency }.
 * First one big request (the memory high point), then `requests` requests over the bodies in turn,
 * `concurrency` at a time. A response is correct when it is a 200 PNG equal to the expected one (or
 * within one 8-bit step per value, should rounding flip). Reports counts, times and memory.
 */
async function runLoad(url, spec) {
  if (url.hostname !== "127.0.0.1") throw new Error(`refusing to load-test ${url.href}: loopback only`);
  const lib = await import(pathToFileURL(spec.index).href);
  const pid = workerdPid();
  const memory = { baseline: memoryOf(pid) };
  const step = (what) => process.stderr.write(`workerd-host: ${what}\n`);
  step("inspector");
  const heap = await isolateHeap(await mf.getInspectorURL());
  heap.start(25);
  step("usage request");
  const read = (f) => new Uint8Array(readFileSync(f));
  const bodies = spec.bodies.map(read);

  async function post(body, expectedFor) {
    const res = await fetch(url, { method: "POST", body, signal: AbortSignal.timeout(60_000) });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const backend = res.headers.get("x-backend") ?? "";
    const isa = /^wasm \(([a-z-]+),/.exec(backend)?.[1];
    const wasmBytes = Number(res.headers.get("x-wasm-memory-bytes"));
    if (res.status !== 200 || res.headers.get("content-type") !== "image/png") {
      return {
        ok: false,
        why: `HTTP ${res.status} ${res.headers.get("content-type")}: ${new TextDecoder().decode(bytes).slice(0, 200)}`,
        wasmBytes,
      };
    }
    const want = expectedFor(isa);
    if (!want) return { ok: false, why: `no expected PNG for instruction set ${isa} (${backend})`, wasmBytes };
    if (Buffer.compare(bytes, want) === 0) return { ok: true, exact: true, isa, wasmBytes };
    const a = (await lib.readImage(bytes)).data,
      b = (await lib.readImage(want)).data;
    let max = a.length === b.length ? 0 : Infinity;
    for (let i = 0; i < a.length && max < Infinity; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
    // readImage maps 0..255 to [-1, 1]: one 8-bit step is 2/255
    return max <= 2 / 255 + 1e-6
      ? { ok: true, exact: false, isa, wasmBytes }
      : { ok: false, why: `pixels differ by up to ${(max * 127.5).toFixed(1)} steps`, wasmBytes };
  }

  const usage = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const usageOk = usage.status === 200 && (await usage.text()).includes("POST");
  const bad = await fetch(url, {
    method: "POST",
    body: new Uint8Array([1, 2, 3]),
    signal: AbortSignal.timeout(10_000),
  });
  const badRequest = { status: bad.status, text: (await bad.text()).trim() };

  step("big request");
  let t0 = performance.now();
  const big = await post(read(spec.big.body), (isa) => spec.big.expected[isa] && read(spec.big.expected[isa]));
  const bigMs = performance.now() - t0;
  memory.afterBig = memoryOf(pid);

  const expected = Object.fromEntries(Object.entries(spec.expected).map(([isa, files]) => [isa, files.map(read)]));
  step("load");
  const results = [];
  let next = 0;
  let inFlight = 0,
    maxInFlight = 0;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: spec.concurrency }, async () => {
      while (next < spec.requests) {
        const i = next++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          results.push(await post(bodies[i % bodies.length], (isa) => expected[isa]?.[i % bodies.length]));
        } catch (e) {
          results.push({ ok: false, why: String(e) });
        } finally {
          inFlight--;
        }
      }
    }),
  );
  const loadMs = performance.now() - t0;
  memory.afterLoad = memoryOf(pid);
  memory.isolate = { peak: heap.stop(), atEnd: await heap.now() };
  heap.close();
  const failures = results.filter((r) => !r.ok);
  return {
    url: url.href,
    usageOk,
    badRequest,
    big: { ...big, ms: Math.round(bigMs) },
    requests: results.length,
    maxInFlight,
    correct: results.length - failures.length,
    exact: results.filter((r) => r.exact).length,
    failures: failures.slice(0, 5).map((f) => f.why),
    isa: [...new Set(results.map((r) => r.isa))],
    loadMs: Math.round(loadMs),
    wasmMemoryMiB: Math.max(big.wasmBytes ?? 0, ...results.map((r) => r.wasmBytes ?? 0)) / 2 ** 20,
    memory,
  };
}

/**
 * The user Worker's isolate memory as V8 counts it (Runtime.getHeapUsage): the JS heap in use plus
 * ArrayBuffer backing stores, which include the WebAssembly memory. start() samples it every `ms` and
 * stop() returns the largest sample, in MiB.
 */
async function isolateHeap(inspector) {
  const targets = await (await fetch(new URL("/json/list", inspector.href.replace(/^ws/, "http")))).json();
  const target = targets.find((t) => t.id === "core:user:");
  if (!target) throw new Error(`no user worker among the inspector's targets: ${targets.map((t) => t.id).join(", ")}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("cannot open the inspector"));
  });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    pending.get(m.id)?.(m.result);
    pending.delete(m.id);
  };
  const call = (method) =>
    new Promise((resolve, reject) => {
      const n = ++id;
      const timer = setTimeout(() => reject(new Error(`inspector: no answer to ${method}`)), 10_000);
      pending.set(n, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      ws.send(JSON.stringify({ id: n, method }));
    });
  const usage = async () => {
    const u = await call("Runtime.getHeapUsage");
    const mib = (b) => b / 2 ** 20;
    return {
      jsHeapMiB: mib(u.usedSize),
      backingStoresMiB: mib(u.backingStorageSize ?? 0),
      totalMiB: mib(u.usedSize + (u.backingStorageSize ?? 0)),
    };
  };
  let peak = null,
    timer = null,
    busy = false;
  return {
    start(ms) {
      timer = setInterval(async () => {
        if (busy) return;
        busy = true;
        const u = await usage();
        if (!peak || u.totalMiB > peak.totalMiB) peak = u;
        busy = false;
      }, ms);
    },
    stop() {
      clearInterval(timer);
      return peak;
    },
    now: usage, // (workerd's inspector does not answer HeapProfiler.collectGarbage)
    close: () => ws.close(),
  };
}
