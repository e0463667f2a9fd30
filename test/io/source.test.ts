import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AutoencoderKLError } from "../../src/errors.js";
import { openRandomAccess, readSource } from "../../src/io/source.js";

const file = "test/fixtures/models/tiny/config.json";
const body = new Uint8Array(readFileSync(file));
let server: Server;
let base = "";

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === "/sized") {
      res.writeHead(200, { "content-length": String(body.length) });
      res.write(body.subarray(0, 100));
      setTimeout(() => res.end(body.subarray(100)), 5);
    } else if (req.url === "/ranged") {
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
      const [s, e] = m ? [Number(m[1]), Math.min(Number(m[2]), body.length - 1)] : [0, body.length - 1];
      res.writeHead(m ? 206 : 200, {
        "content-range": `bytes ${s}-${e}/${body.length}`,
        "content-length": String(e - s + 1),
      });
      res.end(body.subarray(s, e + 1));
    } else if (req.url === "/chunked") {
      res.writeHead(200); // no content-length: chunked transfer
      res.write(body.subarray(0, 50));
      res.end(body.subarray(50));
    } else if (req.url === "/short") {
      res.writeHead(200, { "content-length": String(body.length + 10) });
      res.write(body, () => res.socket?.destroy());
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("readSource", () => {
  test("bytes are returned as is, ArrayBuffers wrapped", async () => {
    expect(await readSource(body)).toBe(body);
    expect(await readSource(body.slice().buffer)).toEqual(body);
  });

  test("local paths and file: URLs, with progress", async () => {
    const seen: [number, number | undefined][] = [];
    expect(await readSource(file, { onProgress: (l, t) => seen.push([l, t]) })).toEqual(body);
    expect(seen.at(-1)).toEqual([body.length, body.length]);
    expect(await readSource(new URL(`../fixtures/models/tiny/config.json`, import.meta.url))).toEqual(body);
  });

  test("Blobs, streamed when progress is wanted", async () => {
    const seen: number[] = [];
    expect(await readSource(new Blob([body]), { onProgress: (l) => seen.push(l) })).toEqual(body);
    expect(seen.at(-1)).toBe(body.length);
  });

  test("http with content-length streams into one buffer with progress", async () => {
    const seen: [number, number | undefined][] = [];
    const got = await readSource(`${base}/sized`, { onProgress: (l, t) => seen.push([l, t]) });
    expect(got).toEqual(body);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every(([, t]) => t === body.length)).toBe(true);
    expect(got.buffer.byteLength).toBe(body.length); // one exact allocation
  });

  test("http without content-length", async () => {
    const seen: [number, number | undefined][] = [];
    expect(await readSource(new URL(`${base}/chunked`), { onProgress: (l, t) => seen.push([l, t]) })).toEqual(body);
    expect(seen.at(-1)).toEqual([body.length, undefined]);
  });

  test("errors name the source", async () => {
    await expect(readSource(`${base}/missing`)).rejects.toThrow(new RegExp(`${base}/missing: HTTP 404`));
    await expect(readSource(`${base}/short`)).rejects.toBeInstanceOf(AutoencoderKLError);
    await expect(readSource("test/fixtures/does-not-exist.bin")).rejects.toThrow(/does-not-exist\.bin: no such file/);
    await expect(readSource(42 as unknown as string)).rejects.toBeInstanceOf(AutoencoderKLError);
  });

  test("abort stops a download", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(readSource(`${base}/sized`, { signal: ac.signal })).rejects.toThrow();
  });

  test("ranged access: bytes, files, Blobs, http with 206; none when the server ignores Range", async () => {
    for (const src of [body, file, new Blob([body]), `${base}/ranged`]) {
      const ra = (await openRandomAccess(src))!;
      expect(ra.size).toBe(body.length);
      expect(await ra.read(10, 20)).toEqual(body.subarray(10, 20));
      await expect(ra.read(0, body.length + 1)).rejects.toThrow(/outside the \d+-byte file/);
      await ra.close();
    }
    expect(await openRandomAccess(`${base}/sized`)).toBeUndefined();
    await expect(openRandomAccess(`${base}/missing`)).rejects.toThrow(/HTTP 404/);
  });
});
