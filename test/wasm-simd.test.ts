// Proves the shipped kernels are SIMD code: decodes every function body of build/kernels-*.wasm
// instruction by instruction and counts the 0xFD-prefixed (v128) opcodes, and the relaxed build's
// f32x4.relaxed_madd (0xFD 0x105). A decoder, not a byte scan, so immediates can't be miscounted as opcodes.
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { importsSharedMemory, wasmRelaxedSimdSupported } from "../src/backends/wasm/binary.js";

const OP = {
  f32x4_add: 0xe4,
  f32x4_mul: 0xe6,
  relaxed_madd_f32x4: 0x105,
  v128_load: 0x00,
  v128_store: 0x0b,
  load32_splat: 0x09,
};

class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    pos = 0,
  ) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.b.length) throw new Error("unexpected end of module");
    return this.b[this.pos++];
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const x = this.byte();
      result += (x & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(x & 0x80)) return result;
    }
  }
  /** Skips a signed LEB128 (value not needed). */
  sleb(): void {
    while (this.byte() & 0x80);
  }
  skip(n: number): void {
    this.pos += n;
  }
}

interface Counts {
  functions: number;
  instructions: number;
  simd: Map<number, number>; // 0xFD sub-opcode -> count
  atomics: Map<number, number>; // 0xFE sub-opcode -> count
}

/** Decodes one function body (locals, then instructions up to its end). */
function decodeBody(r: Reader, end: number, c: Counts): void {
  const groups = r.u32();
  for (let i = 0; i < groups; i++) {
    r.u32();
    r.byte();
  }
  const memarg = () => {
    r.u32();
    r.u32();
  };
  while (r.pos < end) {
    const op = r.byte();
    c.instructions++;
    if (op === 0x02 || op === 0x03 || op === 0x04) {
      const t = r.b[r.pos];
      if (t === 0x40 || (t >= 0x7b && t <= 0x7f) || t === 0x70 || t === 0x6f) r.skip(1);
      else r.sleb();
    } else if (op === 0x0c || op === 0x0d || op === 0x10 || (op >= 0x20 && op <= 0x26) || op === 0xd2) {
      r.u32();
    } else if (op === 0x0e) {
      const n = r.u32();
      for (let i = 0; i <= n; i++) r.u32();
    } else if (op === 0x11) {
      r.u32();
      r.u32();
    } else if (op === 0x1c) {
      const n = r.u32();
      r.skip(n);
    } else if (op >= 0x28 && op <= 0x3e) {
      memarg();
    } else if (op === 0x3f || op === 0x40 || op === 0xd0) {
      r.skip(1);
    } else if (op === 0x41 || op === 0x42) {
      r.sleb();
    } else if (op === 0x43) {
      r.skip(4);
    } else if (op === 0x44) {
      r.skip(8);
    } else if (op === 0xfc) {
      const sub = r.u32();
      if (sub === 8) {
        r.u32();
        r.skip(1);
      } else if (sub === 10) r.skip(2);
      else if (sub === 11) r.skip(1);
      else if (sub === 12 || sub === 14) {
        r.u32();
        r.u32();
      } else if (sub === 9 || sub === 13 || (sub >= 15 && sub <= 17)) r.u32();
    } else if (op === 0xfd) {
      const sub = r.u32();
      c.simd.set(sub, (c.simd.get(sub) ?? 0) + 1);
      if (sub <= 11 || sub === 92 || sub === 93) memarg();
      else if (sub === 12 || sub === 13) r.skip(16);
      else if (sub >= 21 && sub <= 34) r.skip(1);
      else if (sub >= 84 && sub <= 91) {
        memarg();
        r.skip(1);
      }
    } else if (op === 0xfe) {
      const sub = r.u32();
      c.atomics.set(sub, (c.atomics.get(sub) ?? 0) + 1);
      if (sub === 0x03) r.skip(1);
      else memarg();
    } else if (
      op > 0xd2 ||
      (op >= 0x06 && op <= 0x0a) ||
      (op >= 0x12 && op <= 0x19) ||
      op === 0x1d ||
      op === 0x1e ||
      op === 0x1f ||
      op === 0x27
    ) {
      throw new Error(`unknown opcode 0x${op.toString(16)} at ${r.pos - 1}`);
    }
  }
  if (r.pos !== end) throw new Error(`function body overran its size (${r.pos} vs ${end})`);
}

function analyse(bytes: Uint8Array): Counts & { sections: number[] } {
  const c: Counts & { sections: number[] } = {
    functions: 0,
    instructions: 0,
    simd: new Map(),
    atomics: new Map(),
    sections: [],
  };
  expect(Array.from(bytes.subarray(0, 8))).toEqual([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    c.sections.push(id);
    if (id === 10) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const bodySize = r.u32();
        const bodyEnd = r.pos + bodySize;
        decodeBody(r, bodyEnd, c);
        c.functions++;
      }
      expect(r.pos).toBe(end);
    }
    r.pos = end;
  }
  return c;
}

const count = (c: Counts, sub: number) => c.simd.get(sub) ?? 0;
const total = (c: Counts) => [...c.simd.values()].reduce((a, b) => a + b, 0);

async function load(name: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(new URL(`../build/${name}`, import.meta.url)));
  } catch (e) {
    throw new Error(`build/${name} is missing: run \`npm run asbuild\` (${String(e)})`);
  }
}

describe("shipped wasm kernels use SIMD", () => {
  it("kernels-simd.wasm: f32x4 mul/add and v128 loads throughout, no relaxed opcodes", async () => {
    const bytes = await load("kernels-simd.wasm");
    expect(WebAssembly.validate(bytes as BufferSource)).toBe(true);
    const c = analyse(bytes);
    expect(c.functions).toBeGreaterThan(10);
    expect(total(c)).toBeGreaterThan(1000);
    expect(count(c, OP.f32x4_mul)).toBeGreaterThan(100);
    expect(count(c, OP.f32x4_add)).toBeGreaterThan(100);
    expect(count(c, OP.v128_load)).toBeGreaterThan(50);
    expect(count(c, OP.load32_splat)).toBeGreaterThanOrEqual(12); // weight broadcasts in the conv/gemm tiles
    for (const [sub] of c.simd)
      expect(sub < 0x100, `relaxed opcode 0x${sub.toString(16)} in the plain build`).toBe(true);
    // no data segments or start function: every worker may instantiate it on the same shared memory
    expect(c.sections).not.toContain(11);
    expect(c.sections).not.toContain(8);
    expect(importsSharedMemory(bytes)).toBe(true);
    // the only atomic instructions: i32.atomic.rmw.add taking units from the convolutions' work counter, and
    // i32.atomic.store resetting it between an upsampling conv's passes (winograd4Pack)
    expect([...c.atomics.keys()].sort((a, b) => a - b)).toEqual([0x17, 0x1e]);
  });

  it("kernels-relaxed.wasm: the multiply-adds are f32x4.relaxed_madd", async () => {
    const bytes = await load("kernels-relaxed.wasm");
    const c = analyse(bytes);
    const madds = count(c, OP.relaxed_madd_f32x4);
    if (process.env.WASM_SIMD_VERBOSE)
      console.log({ madds, mul: count(c, OP.f32x4_mul), simdOps: total(c), instructions: c.instructions });
    expect(madds).toBeGreaterThan(100);
    // the hot loops' mul + add pairs became fused: far fewer f32x4.mul than in the plain build
    const plain = analyse(await load("kernels-simd.wasm"));
    expect(count(c, OP.f32x4_mul)).toBeLessThan(count(plain, OP.f32x4_mul) - madds / 2);
    expect(importsSharedMemory(bytes)).toBe(true);
    // validation agrees with the engine's support (true here when run with the relaxed-SIMD flag)
    expect(WebAssembly.validate(bytes as BufferSource)).toBe(wasmRelaxedSimdSupported());
  });
});
