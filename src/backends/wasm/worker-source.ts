/**
 * The worker thread's program, as source text. It is started from a string (Node: a data: URL, loaded as an
 * ES module whatever the parent's --input-type or package type; browsers: a Blob URL) rather than from a
 * file next to this one, so it runs the same from the TypeScript sources (vitest) and from dist/ or a
 * bundle, with no extra file to ship or resolve.
 *
 * Protocol (structured-clone messages):
 *   → { type: "init", module: WebAssembly.Module, memory: WebAssembly.Memory (shared) }
 *   ← { type: "ready" } | { type: "error", message }
 *   → { type: "run", id, name, args: number[], tid, nt }   calls exports[name](...args, tid, nt)
 *   ← { type: "done", id } | { type: "error", id, message }
 */
const BODY = `
let kernels = null;
function handle(m) {
  if (m.type === "init") {
    try {
      const instance = new WebAssembly.Instance(m.module, {
        env: { memory: m.memory, abort() { throw new Error("wasm kernel abort"); } },
      });
      kernels = instance.exports;
      post({ type: "ready" });
    } catch (e) {
      post({ type: "error", message: String(e && e.message || e) });
    }
  } else if (m.type === "run") {
    try {
      kernels[m.name](...m.args, m.tid, m.nt);
      post({ type: "done", id: m.id });
    } catch (e) {
      post({ type: "error", id: m.id, message: String(e && e.message || e) });
    }
  }
}
`;

/** For node:worker_threads `new Worker(new URL("data:text/javascript," + encodeURIComponent(source)))`. */
export const NODE_WORKER_SOURCE = `import { parentPort } from "node:worker_threads";
const post = (m) => parentPort.postMessage(m);
parentPort.on("message", handle);
${BODY}`;

/** For a browser Web Worker created from a Blob URL. */
export const BROWSER_WORKER_SOURCE = `"use strict";
const post = (m) => self.postMessage(m);
self.onmessage = (e) => handle(e.data);
${BODY}`;
