// Runs a bundled module Worker in workerd through miniflare (which needs Node >= 22, so the test starts
// this file with such a Node). Usage: node workerd-host.mjs <dir with worker.mjs> <assets dir> <mode> [args]
//   probe <out file>   GET / → the probe's safetensors written to <out file>; GET /without-module → JSON
//   load <spec.json>   see runLoad below
// Prints one JSON line with what it found; exits non-zero on failure. Listens on 127.0.0.1 only.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
});

try {
  const url = await mf.ready;
  if (mode === "probe") {
    const res = await mf.dispatchFetch(new URL("/", url));
    if (!res.ok) throw new Error(`probe: HTTP ${res.status}: ${await res.text()}`);
    writeFileSync(arg, new Uint8Array(await res.arrayBuffer()));
    const without = await (await mf.dispatchFetch(new URL("/without-module", url))).json();
    console.log(JSON.stringify({ without, workerd: memoryOf(workerdPid()) }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await mf.dispose();
}
