// A tiny static file server for browser tests: 127.0.0.1 on a random port, files under one root only,
// a bounded number of requests, and it closes itself when idle so a failed test cannot leave it running.
import { createReadStream, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { extname, resolve, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".safetensors": "application/octet-stream",
};

export interface StaticServerOptions {
  /** Serve with COOP/COEP so pages are cross-origin isolated (SharedArrayBuffer, wasm threads). */
  isolated?: boolean;
  /** Stop answering after this many requests (default 1000). */
  maxRequests?: number;
  /** Close after this long without a request (default 120 s). */
  idleMs?: number;
  /** Answer single "Range: bytes=a-b" requests with 206 (default: whole files only, as before). */
  ranges?: boolean;
}

export interface StaticServer {
  /** Base URL ending in "/". */
  url: string;
  /** Paths requested so far, in order (for assertions and debugging). */
  requests: string[];
  /** Every file response: path and the byte range [start, end) sent (whole files included). */
  served: { path: string; start: number; end: number }[];
  close(): Promise<void>;
}

export async function startStaticServer(root: string, options: StaticServerOptions = {}): Promise<StaticServer> {
  const base = resolve(root);
  const maxRequests = options.maxRequests ?? 1000;
  const idleMs = options.idleMs ?? 120_000;
  const requests: string[] = [];
  const served: StaticServer["served"] = [];
  let idle: NodeJS.Timeout | undefined;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    armIdle();
    if (requests.length >= maxRequests) {
      res.writeHead(503).end("request limit reached");
      return;
    }
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push(path);
    if (options.isolated) {
      res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
      res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    }
    res.setHeader("Cache-Control", "no-store");
    const file = resolve(base, "." + path);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error("not a file");
      size = st.size;
    } catch {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
      return;
    }
    const type = TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
    const range = options.ranges ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(size, range[2] === "" ? size : Number(range[2]) + 1);
      if (start >= end) {
        res.writeHead(416, { "Content-Range": `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        "Content-Type": type,
        "Content-Length": end - start,
        "Content-Range": `bytes ${start}-${end - 1}/${size}`,
      });
      if (req.method === "HEAD") res.end();
      else {
        served.push({ path, start, end });
        createReadStream(file, { start, end: end - 1 }).pipe(res);
      }
      return;
    }
    res.writeHead(200, { "Content-Type": type, "Content-Length": size });
    if (req.method === "HEAD") res.end();
    else {
      served.push({ path, start: 0, end: size });
      createReadStream(file).pipe(res);
    }
  };

  const server = createServer(handler);
  const close = () =>
    new Promise<void>((done) => {
      clearTimeout(idle);
      server.closeAllConnections();
      server.close(() => done());
    });
  function armIdle() {
    clearTimeout(idle);
    idle = setTimeout(() => void close(), idleMs);
    idle.unref();
  }
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok());
  });
  armIdle();
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("static server: no port");
  return { url: `http://127.0.0.1:${addr.port}/`, requests, served, close };
}
