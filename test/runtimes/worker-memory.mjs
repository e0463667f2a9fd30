// The Cloudflare Worker example as it is, plus one response header for the load test: the bytes of
// WebAssembly memory the isolate holds (the kernels' linear memory). Workers offer no memory API, so this
// wrapper counts the memories created after it loads (the library makes its one on the first request).
import worker from "../../examples/cloudflare-worker/src/index.js";

const memories = [];
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = new Proxy(NativeMemory, {
  construct(target, args) {
    const m = Reflect.construct(target, args);
    memories.push(new WeakRef(m));
    return m;
  },
});

export default {
  async fetch(request, env, ctx) {
    const res = await worker.fetch(request, env, ctx);
    let bytes = 0;
    for (const r of memories) bytes += r.deref()?.buffer.byteLength ?? 0;
    const out = new Response(res.body, res);
    out.headers.set("x-wasm-memory-bytes", String(bytes));
    return out;
  },
};
