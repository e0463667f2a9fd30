import { isNode } from "../../platform.js";
import { BROWSER_WORKER_SOURCE, NODE_WORKER_SOURCE } from "./worker-source.js";

/** What the pool needs from a Node worker_threads Worker or a browser Web Worker. */
interface Port {
  post(message: unknown): void;
  terminate(): void;
  /** Node only: keep the process alive while work is in flight, not while idle. */
  ref(): void;
  unref(): void;
}

type Message = { type: "ready" } | { type: "done"; id: number } | { type: "error"; id?: number; message: string };

async function spawn(onMessage: (m: Message) => void, onError: (e: unknown) => void): Promise<Port> {
  if (isNode()) {
    const spec = "node:worker_threads"; // held in a variable so browser bundlers leave it alone
    const wt = (await import(spec)) as typeof import("node:worker_threads");
    const w = new wt.Worker(new URL(`data:text/javascript,${encodeURIComponent(NODE_WORKER_SOURCE)}`));
    w.on("message", onMessage);
    w.on("error", onError);
    return {
      post: (m) => w.postMessage(m),
      terminate: () => void w.terminate(),
      ref: () => w.ref(),
      unref: () => w.unref(),
    };
  }
  const url = URL.createObjectURL(new Blob([BROWSER_WORKER_SOURCE], { type: "text/javascript" }));
  const w = new Worker(url);
  URL.revokeObjectURL(url);
  w.onmessage = (e: MessageEvent) => onMessage(e.data as Message);
  w.onerror = (e) => onError(e);
  return { post: (m) => w.postMessage(m), terminate: () => w.terminate(), ref() {}, unref() {} };
}

/**
 * `size - 1` workers, each with its own instance of the kernels on one shared memory; the calling thread
 * is thread 0. `run` hands every worker the same call with its thread index and waits for all of them.
 * Calls must not overlap (the backend queues them).
 */
export class ThreadPool {
  private readonly ports: Port[] = [];
  private waiting = new Map<number, { left: number; resolve: () => void; reject: (e: Error) => void; error?: Error }>();
  private nextId = 1;
  private ready: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private failure: Error | null = null;

  private constructor(readonly size: number) {}

  static async create(size: number, module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<ThreadPool> {
    const pool = new ThreadPool(size);
    try {
      const started: Promise<void>[] = [];
      for (let i = 1; i < size; i++) {
        started.push(new Promise<void>((resolve, reject) => pool.ready.push({ resolve, reject })));
        const port = await spawn(
          (m) => pool.onMessage(m),
          (e) => pool.onError(e),
        );
        pool.ports.push(port);
        port.post({ type: "init", module, memory });
      }
      await Promise.all(started);
      for (const p of pool.ports) p.unref();
      return pool;
    } catch (e) {
      pool.terminate();
      throw e;
    }
  }

  /**
   * Runs `name(...args, tid, size)` on every worker (tid 1..size-1) and `local(0, size)` on this thread.
   */
  run(name: string, args: number[], local: (tid: number, nt: number) => void): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const done = new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { left: this.ports.length, resolve, reject });
    });
    for (const p of this.ports) p.ref();
    for (const [i, p] of this.ports.entries()) p.post({ type: "run", id, name, args, tid: i + 1, nt: this.size });
    let localError: unknown = null;
    try {
      local(0, this.size);
    } catch (e) {
      localError = e;
    }
    return done.finally(() => {
      for (const p of this.ports) p.unref();
      if (localError) throw localError;
    });
  }

  terminate(): void {
    for (const p of this.ports) p.terminate();
    this.ports.length = 0;
    const err = new Error("thread pool terminated");
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  private onMessage(m: Message): void {
    if (m.type === "ready") {
      this.ready.shift()?.resolve();
      return;
    }
    if (m.id === undefined) {
      this.ready.shift()?.reject(new Error(`wasm worker failed to start: ${m.type === "error" ? m.message : ""}`));
      return;
    }
    const w = this.waiting.get(m.id);
    if (!w) return;
    if (m.type === "error") w.error ??= new Error(`wasm worker: ${m.message}`);
    if (--w.left === 0) {
      this.waiting.delete(m.id);
      if (w.error) w.reject(w.error);
      else w.resolve();
    }
  }

  private onError(e: unknown): void {
    this.failure = e instanceof Error ? e : new Error(String(e));
    for (const r of this.ready) r.reject(this.failure);
    this.ready = [];
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }
}
