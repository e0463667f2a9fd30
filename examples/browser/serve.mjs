// A static server for the example page with the two headers that make it cross-origin isolated
// (COOP: same-origin, COEP: require-corp), so SharedArrayBuffer — and the kernels' worker threads — are on.
// No dependencies: `node examples/browser/serve.mjs [port]` from the repository root, then open
// http://127.0.0.1:8080/examples/browser/ (PORT=0 picks a free port; the URL is printed).
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".jpg": "image/jpeg",
};
const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);

const server = createServer((req, res) => {
  let path = resolve(join(root, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)));
  if (path !== root && !path.startsWith(root + sep)) return res.writeHead(403).end();
  try {
    if (statSync(path).isDirectory()) path = join(path, "index.html");
    const size = statSync(path).size;
    res.writeHead(200, {
      "content-type": types[extname(path)] ?? "application/octet-stream",
      "content-length": size,
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    });
    createReadStream(path).pipe(res);
  } catch {
    res.writeHead(404).end("not found");
  }
});
server.listen(port, "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${server.address().port}/examples/browser/  (cross-origin isolated: threads on)`);
});
