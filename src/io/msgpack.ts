/**
 * A small MessagePack decoder (no dependency) for Flax checkpoints. Hardened for hostile input:
 * every length is checked against the bytes left before anything is sliced or allocated, nesting
 * is bounded, duplicate map keys are refused, and only AutoencoderKLError escapes.
 */
import { AutoencoderKLError } from "../errors.js";

/** An extension value the caller's hook did not claim. `data` is a view into the input. */
export class MsgpackExt {
  constructor(
    readonly type: number,
    readonly data: Uint8Array,
  ) {}
}

/** Maps keep their keys as decoded (strings, numbers…); bin values are views into the input. */
export type MsgpackValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | MsgpackValue[]
  | Map<MsgpackValue, MsgpackValue>
  | MsgpackExt
  | unknown;

export interface MsgpackOptions {
  /** Decode an extension value (type, payload view) or return undefined to keep a MsgpackExt. */
  ext?: (type: number, data: Uint8Array) => unknown;
  /** Deepest nesting of arrays/maps accepted (default 64). */
  maxDepth?: number;
}

export function decodeMsgpack(bytes: Uint8Array, source = "msgpack", options: MsgpackOptions = {}): MsgpackValue {
  const d = new Decoder(bytes, source, options);
  try {
    const v = d.value(0);
    if (d.pos !== bytes.length) d.fail(`${bytes.length - d.pos} trailing bytes after the value`);
    return v;
  } catch (cause) {
    if (cause instanceof AutoencoderKLError) throw cause;
    throw new AutoencoderKLError(source, `malformed msgpack (${(cause as Error)?.message ?? String(cause)})`, {
      cause,
    });
  }
}

class Decoder {
  pos = 0;
  private readonly dv: DataView;
  private readonly utf8 = new TextDecoder("utf-8", { fatal: true });
  private readonly maxDepth: number;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly source: string,
    private readonly options: MsgpackOptions,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.maxDepth = options.maxDepth ?? 64;
  }

  fail(rule: string): never {
    throw new AutoencoderKLError(this.source, `msgpack: ${rule}`);
  }

  private need(n: number): number {
    if (this.pos + n > this.bytes.length)
      this.fail(`truncated: ${n} bytes needed at byte ${this.pos}, ${this.bytes.length - this.pos} left`);
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private take(n: number): Uint8Array {
    const p = this.need(n);
    return this.bytes.subarray(p, p + n);
  }
  private str(n: number): string {
    try {
      return this.utf8.decode(this.take(n));
    } catch (cause) {
      if (cause instanceof AutoencoderKLError) throw cause;
      return this.fail(`invalid UTF-8 in a string ending at byte ${this.pos}`);
    }
  }
  private u64(p: number, signed: boolean): number | bigint {
    const v = signed ? this.dv.getBigInt64(p, false) : this.dv.getBigUint64(p, false);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  /** Each element takes at least one byte, so a count above what is left is a lie. */
  private count(n: number, per: number): number {
    if (n * per > this.bytes.length - this.pos)
      this.fail(
        `container of ${n} entries at byte ${this.pos} cannot fit in the ${this.bytes.length - this.pos} bytes left`,
      );
    return n;
  }

  value(depth: number): MsgpackValue {
    const b = this.bytes[this.need(1)];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return this.str(b & 0x1f);
    if (b >= 0x90 && b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b >= 0x80 && b <= 0x8f) return this.map(b & 0x0f, depth);
    const dv = this.dv;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.take(this.bytes[this.need(1)]);
      case 0xc5:
        return this.take(dv.getUint16(this.need(2), false));
      case 0xc6:
        return this.take(dv.getUint32(this.need(4), false));
      case 0xc7:
        return this.ext(this.bytes[this.need(1)]);
      case 0xc8:
        return this.ext(dv.getUint16(this.need(2), false));
      case 0xc9:
        return this.ext(dv.getUint32(this.need(4), false));
      case 0xca:
        return dv.getFloat32(this.need(4), false);
      case 0xcb:
        return dv.getFloat64(this.need(8), false);
      case 0xcc:
        return this.bytes[this.need(1)];
      case 0xcd:
        return dv.getUint16(this.need(2), false);
      case 0xce:
        return dv.getUint32(this.need(4), false);
      case 0xcf:
        return this.u64(this.need(8), false);
      case 0xd0:
        return dv.getInt8(this.need(1));
      case 0xd1:
        return dv.getInt16(this.need(2), false);
      case 0xd2:
        return dv.getInt32(this.need(4), false);
      case 0xd3:
        return this.u64(this.need(8), true);
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.bytes[this.need(1)]);
      case 0xda:
        return this.str(dv.getUint16(this.need(2), false));
      case 0xdb:
        return this.str(dv.getUint32(this.need(4), false));
      case 0xdc:
        return this.array(dv.getUint16(this.need(2), false), depth);
      case 0xdd:
        return this.array(dv.getUint32(this.need(4), false), depth);
      case 0xde:
        return this.map(dv.getUint16(this.need(2), false), depth);
      case 0xdf:
        return this.map(dv.getUint32(this.need(4), false), depth);
      default:
        return this.fail(`invalid type byte 0xc1 at byte ${this.pos - 1}`);
    }
  }

  private array(n: number, depth: number): MsgpackValue[] {
    if (depth >= this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    const out = new Array<MsgpackValue>(this.count(n, 1));
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  private map(n: number, depth: number): Map<MsgpackValue, MsgpackValue> {
    if (depth >= this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.count(n, 2);
    const out = new Map<MsgpackValue, MsgpackValue>();
    for (let i = 0; i < n; i++) {
      const keyAt = this.pos;
      const k = this.value(depth + 1);
      if (typeof k === "object" && k !== null) this.fail(`map key at byte ${keyAt} is not a scalar`);
      // msgpack libraries silently keep the last duplicate; a checkpoint with two values for one name is broken.
      if (out.has(k)) this.fail(`duplicate map key ${JSON.stringify(String(k)).slice(0, 130)} at byte ${keyAt}`);
      out.set(k, this.value(depth + 1));
    }
    return out;
  }

  private ext(n: number): MsgpackValue {
    const type = this.dv.getInt8(this.need(1));
    const data = this.take(n);
    const hooked = this.options.ext?.(type, data);
    return hooked === undefined ? new MsgpackExt(type, data) : hooked;
  }
}
