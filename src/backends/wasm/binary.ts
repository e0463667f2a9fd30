/**
 * Small facts about WebAssembly binaries: detecting relaxed SIMD, and switching the kernels' memory
 * import between shared and unshared.
 *
 * The kernels are compiled once with a shared memory import (so worker threads can share it); an engine
 * links an import only to a memory of the same sharedness, and shared memories need cross-origin isolation
 * in browsers. Where no shared memory can be made, the import's limits flag is patched to unshared: the
 * code itself uses no atomics, so the module is otherwise identical.
 */

/** A module with one function `() -> v128` whose body (no locals) is `code`: a feature probe for validate(). */
function v128Probe(code: number[]): Uint8Array<ArrayBuffer> {
  const body = [0x00, ...code, 0x0b]; // no locals, the code, end (every probe is under 128 bytes: one-byte sizes)
  // biome-ignore format: one row per section
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // code section: one body
  ]);
}

/** v128.const 0 */
function v128Const(): number[] {
  return [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
}

// (module (func (result v128) v128.const 0 v128.const 0 v128.const 0 f32x4.relaxed_madd))
const RELAXED_PROBE = v128Probe([...v128Const(), ...v128Const(), ...v128Const(), 0xfd, 0x85, 0x02]); // relaxed_madd = 0xfd 0x105
// (module (func (result v128) v128.const 0))
const SIMD_PROBE = v128Probe(v128Const());

/** True when this engine compiles relaxed-SIMD code (Node 20 needs --experimental-wasm-relaxed-simd). */
export function wasmRelaxedSimdSupported(): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/** True when this engine compiles fixed-width SIMD code. */
export function wasmSimdSupported(): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

function readLeb(bytes: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++];
    if (b === undefined) throw new Error("truncated LEB128");
    result += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [result, pos];
  }
}

/**
 * Byte position of the limits flag of the module's memory import (env.memory), or -1 if it has none.
 */
export function memoryImportFlagOffset(bytes: Uint8Array): number {
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, body] = readLeb(bytes, pos + 1);
    if (id === 2) {
      let p = body;
      let count: number;
      [count, p] = readLeb(bytes, p);
      for (let i = 0; i < count; i++) {
        let len: number;
        [len, p] = readLeb(bytes, p);
        p += len; // module name
        [len, p] = readLeb(bytes, p);
        p += len; // field name
        const kind = bytes[p++];
        if (kind === 0x00) {
          [, p] = readLeb(bytes, p); // function type index
        } else if (kind === 0x01) {
          p++; // reference type
          const flags = bytes[p++];
          [, p] = readLeb(bytes, p);
          if (flags & 1) [, p] = readLeb(bytes, p);
        } else if (kind === 0x02) {
          return p;
        } else if (kind === 0x03) {
          p += 2; // value type, mutability
        } else {
          throw new Error(`unknown import kind ${kind}`);
        }
      }
      return -1;
    }
    pos = body + size;
  }
  return -1;
}

/** Whether the module's memory import is declared shared. */
export function importsSharedMemory(bytes: Uint8Array): boolean {
  const at = memoryImportFlagOffset(bytes);
  return at >= 0 && (bytes[at] & 2) !== 0;
}

/** A copy of the module whose memory import is shared or not, as asked (the input is not modified). */
export function withSharedMemoryImport(bytes: Uint8Array, shared: boolean): Uint8Array {
  const at = memoryImportFlagOffset(bytes);
  if (at < 0) throw new Error("module has no memory import");
  const copy = bytes.slice();
  copy[at] = shared ? copy[at] | 2 : copy[at] & ~2;
  return copy;
}
