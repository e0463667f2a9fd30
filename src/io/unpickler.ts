/**
 * A restricted unpickler that runs nothing: it knows the opcodes and the handful of globals torch.save
 * emits for tensors and ordered dicts (what torch.load(weights_only=True) allows), and refuses every other
 * global by name the moment it is named. The torch.save containers around it are in torch-checkpoint.ts.
 */
import { AutoencoderKLError } from "../errors.js";

// ---------------------------------------------------------------------------------------------
// Values the unpickler builds. Python dicts are Maps, lists are arrays, tuples frozen arrays,
// str is string, bytes Uint8Array, int number (bigint past 2^53), None null.

/** A global the allowlist let through; only ever looked up, never executed. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An inert stand-in for an allowed non-tensor object (e.g. a Lightning callback in a .ckpt). */
export class PyObject {
  state: unknown = undefined;
  constructor(
    readonly className: string,
    readonly args: readonly unknown[],
  ) {}
}

/** Storage element types by torch's storage class names. */
export const STORAGE_DTYPES: Readonly<Record<string, { dtype: string; size: number }>> = {
  FloatStorage: { dtype: "F32", size: 4 },
  DoubleStorage: { dtype: "F64", size: 8 },
  HalfStorage: { dtype: "F16", size: 2 },
  BFloat16Storage: { dtype: "BF16", size: 2 },
  LongStorage: { dtype: "I64", size: 8 },
  IntStorage: { dtype: "I32", size: 4 },
  ShortStorage: { dtype: "I16", size: 2 },
  CharStorage: { dtype: "I8", size: 1 },
  ByteStorage: { dtype: "U8", size: 1 },
  BoolStorage: { dtype: "BOOL", size: 1 },
  ComplexFloatStorage: { dtype: "C64", size: 8 },
  ComplexDoubleStorage: { dtype: "C128", size: 16 },
  Float8_e4m3fnStorage: { dtype: "F8_E4M3", size: 1 },
  Float8_e5m2Storage: { dtype: "F8_E5M2", size: 1 },
};

/** A storage named by a persistent id; its bytes live outside the pickle. */
export interface TorchStorage {
  key: string;
  storageClass: string;
  dtype: string;
  elementSize: number;
  /** Elements in the storage (for a legacy view: in the view). */
  numel: number;
  /** Legacy views: the root storage's key and the view's element offset into it. */
  root: string;
  rootOffset: number;
}

/** A tensor as torch describes it: a strided window on a storage. Converted only on demand. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get dtype(): string {
    return this.storage.dtype;
  }
}

// ---------------------------------------------------------------------------------------------
// The allowlist. Python 2 module names (protocol 2 writes them) are mapped the way Python's
// fix_imports does before the check, so the error names what Python would have run.

const FIX_IMPORTS: Readonly<Record<string, string>> = { __builtin__: "builtins", copy_reg: "copyreg" };

/** Inert classes: instantiated only as PyObject placeholders (needed by old SD .ckpt files). */
const PLACEHOLDER_CLASSES = new Set([
  "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
  "numpy.core.multiarray.scalar",
  "numpy._core.multiarray.scalar",
  "numpy.dtype",
  "torch.device",
]);

type Reducer = (args: readonly unknown[], u: Unpickler) => unknown;

const REDUCERS: Readonly<Record<string, Reducer>> = {
  "collections.OrderedDict": (args, u) => {
    const m = new Map<unknown, unknown>();
    if (args.length > 0 && Array.isArray(args[0])) {
      for (const pair of args[0]) {
        if (!Array.isArray(pair) || pair.length !== 2) u.fail("OrderedDict items must be pairs");
        m.set(pair[0], pair[1]);
      }
    }
    return m;
  },
  "torch._utils._rebuild_tensor_v2": (args, u) => rebuildTensor(args, u),
  "torch._utils._rebuild_tensor": (args, u) => rebuildTensor(args, u),
  "torch._utils._rebuild_parameter": (args, u) => tensorArg(args[0], u),
  "torch._utils._rebuild_parameter_with_state": (args, u) => tensorArg(args[0], u),
  "torch.nn.parameter.Parameter": (args, u) => tensorArg(args[0], u),
  "torch._tensor._rebuild_from_type_v2": (args, u) => {
    // (func, new_type, func_args, state): a tensor subclass (Parameter) around func(*func_args).
    const [func, , funcArgs] = args;
    if (!(func instanceof PyGlobal) || !Array.isArray(funcArgs)) u.fail("malformed _rebuild_from_type_v2");
    return u.call(func as PyGlobal, funcArgs as unknown[]);
  },
  "torch.Size": (args) => (Array.isArray(args[0]) ? [...args[0]] : []),
  "builtins.set": (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  "builtins.frozenset": (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  "_codecs.encode": (args, u) => {
    // How protocol 2 spells a bytes object: _codecs.encode(str, "latin1").
    const [text, encoding] = args;
    if (typeof text !== "string") return u.fail("_codecs.encode of a non-string");
    if (encoding === "latin1" || encoding === "latin-1" || encoding === "iso-8859-1") {
      const out = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c > 0xff) u.fail("_codecs.encode: character outside latin1");
        out[i] = c;
      }
      return out;
    }
    if (encoding === "utf-8" || encoding === "utf8") return new TextEncoder().encode(text);
    return u.fail(`_codecs.encode with unsupported encoding ${JSON.stringify(encoding)}`);
  },
  "copyreg._reconstructor": (args, u) => {
    // copyreg's generic object.__new__(cls): allowed only for the inert placeholder classes.
    const cls = args[0];
    if (!(cls instanceof PyGlobal) || !PLACEHOLDER_CLASSES.has(cls.fullName))
      u.fail("copyreg._reconstructor of a forbidden class");
    return new PyObject((cls as PyGlobal).fullName, args.slice(1));
  },
};

function isAllowedGlobal(full: string, module: string, name: string): boolean {
  if (Object.hasOwn(REDUCERS, full) || PLACEHOLDER_CLASSES.has(full)) return true;
  return module === "torch" && Object.hasOwn(STORAGE_DTYPES, name);
}

function tensorArg(v: unknown, u: Unpickler): TorchTensorRef {
  if (!(v instanceof TorchTensorRef)) u.fail("parameter data is not a tensor");
  return v as TorchTensorRef;
}

function intList(v: unknown, what: string, u: Unpickler): number[] {
  if (!Array.isArray(v)) u.fail(`${what} is not a tuple`);
  const out: number[] = [];
  for (const d of v as unknown[]) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) u.fail(`${what} has a bad entry ${String(d)}`);
    out.push(d as number);
  }
  return out;
}

function rebuildTensor(args: readonly unknown[], u: Unpickler): TorchTensorRef {
  const [storage, offset, size, stride] = args;
  if (!u.isStorage(storage)) u.fail("_rebuild_tensor: first argument is not a storage");
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0)
    u.fail("_rebuild_tensor: bad storage offset");
  const shape = intList(size, "tensor size", u);
  const strides = intList(stride, "tensor stride", u);
  if (shape.length !== strides.length) u.fail("tensor size and stride differ in length");
  return new TorchTensorRef(storage as TorchStorage, offset as number, shape, strides);
}

// ---------------------------------------------------------------------------------------------

type PersistentLoad = (pid: unknown, u: Unpickler) => unknown;

const MAX_LONG_BYTES = 256;
const MAX_LINE = 1 << 16;

/** Runs one pickle from `pos`; never calls anything outside REDUCERS. */
export class Unpickler {
  pos: number;
  private stack: unknown[] = [];
  private readonly metastack: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly dv: DataView;
  private readonly utf8 = new TextDecoder("utf-8");
  private readonly storages = new WeakSet<object>();

  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    readonly source: string,
    private readonly persistentLoad?: PersistentLoad,
  ) {
    this.pos = start;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(rule: string): never {
    throw new AutoencoderKLError(this.source, `pickle: ${rule}`);
  }

  markStorage(s: TorchStorage): TorchStorage {
    this.storages.add(s);
    return s;
  }

  isStorage(v: unknown): v is TorchStorage {
    return typeof v === "object" && v !== null && this.storages.has(v);
  }

  call(fn: PyGlobal, args: readonly unknown[]): unknown {
    const r = Object.hasOwn(REDUCERS, fn.fullName) ? REDUCERS[fn.fullName] : undefined;
    if (!r) {
      if (PLACEHOLDER_CLASSES.has(fn.fullName)) return new PyObject(fn.fullName, args);
      this.fail(`${fn.fullName} cannot be called`);
    }
    return r(args, this);
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.bytes.length) this.fail(`truncated at byte ${this.pos}`);
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private u8(): number {
    return this.bytes[this.need(1)];
  }
  private u16(): number {
    return this.dv.getUint16(this.need(2), true);
  }
  private u32(): number {
    return this.dv.getUint32(this.need(4), true);
  }
  private u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi >= 0x200000) this.fail("length beyond 2^53");
    return hi * 2 ** 32 + lo;
  }
  private take(n: number): Uint8Array {
    const p = this.need(n);
    return this.bytes.subarray(p, p + n);
  }
  private line(): string {
    // Bounded search: text opcodes carry short lines, and an unbounded scan per opcode would be quadratic.
    const window = this.bytes.subarray(this.pos, Math.min(this.bytes.length, this.pos + MAX_LINE));
    const rel = window.indexOf(0x0a);
    if (rel < 0) this.fail(`unterminated line (or longer than ${MAX_LINE} bytes) at byte ${this.pos}`);
    const end = this.pos + rel;
    const s = this.utf8.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  private pop(): unknown {
    if (this.stack.length === 0) this.fail(`stack underflow at byte ${this.pos - 1}`);
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) this.fail(`stack underflow at byte ${this.pos - 1}`);
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const items = this.stack;
    const prev = this.metastack.pop();
    if (!prev) this.fail(`no MARK before byte ${this.pos - 1}`);
    this.stack = prev!;
    return items;
  }
  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`memo key ${i} not defined`);
    return this.memo.get(i);
  }
  private decodeLong(b: Uint8Array): number | bigint {
    if (b.length > MAX_LONG_BYTES) this.fail(`integer of ${b.length} bytes`);
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return toNumber(v);
  }
  private global(module: string, name: string): PyGlobal {
    const mod = Object.hasOwn(FIX_IMPORTS, module) ? FIX_IMPORTS[module] : module;
    const full = `${mod}.${name}`;
    // Refused here, before anything could reference it: this is the whole security boundary.
    if (!isAllowedGlobal(full, mod, name)) this.fail(`forbidden global ${full}`);
    return new PyGlobal(mod, name);
  }
  private setItems(target: unknown, items: unknown[]): void {
    if (!(target instanceof Map)) this.fail("SETITEM(S) on a non-dict");
    if (items.length % 2 !== 0) this.fail("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  }
  private appendItems(target: unknown, items: unknown[]): void {
    if (target instanceof Set) {
      for (const x of items) target.add(x);
      return;
    }
    if (!Array.isArray(target) || Object.isFrozen(target)) this.fail("APPEND(S) on a non-list");
    for (const x of items) (target as unknown[]).push(x);
  }

  /** Execute opcodes up to STOP; returns the pickled value. */
  load(): unknown {
    const bytes = this.bytes;
    for (;;) {
      if (this.pos >= bytes.length) this.fail("ended without STOP");
      const at = this.pos;
      const op = bytes[this.pos++];
      switch (op) {
        case 0x80: {
          // PROTO
          const v = this.u8();
          if (v > 5) this.fail(`unsupported pickle protocol ${v}`);
          break;
        }
        case 0x95: // FRAME: the length is only a buffering hint
          this.need(8);
          break;
        case 0x2e: // STOP
          return this.pop();
        case 0x28: // MARK
          this.metastack.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP
          if (this.stack.length) this.stack.pop();
          else this.popMark();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.stack.push(this.top());
          break;
        // integers
        case 0x4a: // BININT
          this.stack.push(this.dv.getInt32(this.need(4), true));
          break;
        case 0x4b: // BININT1
          this.stack.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.stack.push(this.u16());
          break;
        case 0x8a: // LONG1
          this.stack.push(this.decodeLong(this.take(this.u8())));
          break;
        case 0x8b: {
          // LONG4
          const n = this.dv.getInt32(this.need(4), true);
          if (n < 0) this.fail("negative LONG4 length");
          this.stack.push(this.decodeLong(this.take(n)));
          break;
        }
        case 0x49: {
          // INT (text; "00"/"01" are False/True)
          const s = this.line();
          if (s === "00") this.stack.push(false);
          else if (s === "01") this.stack.push(true);
          else this.stack.push(this.parseIntText(s));
          break;
        }
        case 0x4c: // LONG (text, trailing L)
          this.stack.push(this.parseIntText(this.line().replace(/L$/, "")));
          break;
        case 0x4e: // NONE
          this.stack.push(null);
          break;
        case 0x88: // NEWTRUE
          this.stack.push(true);
          break;
        case 0x89: // NEWFALSE
          this.stack.push(false);
          break;
        case 0x46: {
          // FLOAT (text)
          const s = this.line().trim();
          const v = Number(s);
          if (s === "" || (Number.isNaN(v) && !/^[-+]?nan$/i.test(s))) this.fail("bad FLOAT");
          this.stack.push(v);
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          this.stack.push(this.dv.getFloat64(this.need(8), false));
          break;
        // strings and bytes
        case 0x58: // BINUNICODE
          this.stack.push(this.utf8.decode(this.take(this.u32())));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.stack.push(this.utf8.decode(this.take(this.u8())));
          break;
        case 0x8d: // BINUNICODE8
          this.stack.push(this.utf8.decode(this.take(this.u64())));
          break;
        case 0x56: // UNICODE (raw-unicode-escape line)
          this.stack.push(rawUnicodeEscape(this.line()));
          break;
        case 0x54: {
          // BINSTRING (Python 2 str; torch.load decodes it as utf-8)
          const n = this.dv.getInt32(this.need(4), true);
          if (n < 0) this.fail("negative BINSTRING length");
          this.stack.push(this.utf8.decode(this.take(n)));
          break;
        }
        case 0x55: // SHORT_BINSTRING
          this.stack.push(this.utf8.decode(this.take(this.u8())));
          break;
        case 0x53: // STRING (quoted repr line)
          this.stack.push(this.parseQuoted(this.line()));
          break;
        case 0x42: // BINBYTES
          this.stack.push(this.take(this.u32()).slice());
          break;
        case 0x43: // SHORT_BINBYTES
          this.stack.push(this.take(this.u8()).slice());
          break;
        case 0x8e: // BINBYTES8
          this.stack.push(this.take(this.u64()).slice());
          break;
        case 0x96: // BYTEARRAY8
          this.stack.push(this.take(this.u64()).slice());
          break;
        // containers
        case 0x5d: // EMPTY_LIST
          this.stack.push([]);
          break;
        case 0x6c: {
          // LIST (popMark swaps this.stack, so take the items before pushing)
          const items = this.popMark();
          this.stack.push(items);
          break;
        }
        case 0x61: {
          // APPEND
          const v = this.pop();
          this.appendItems(this.top(), [v]);
          break;
        }
        case 0x65: {
          // APPENDS
          const items = this.popMark();
          this.appendItems(this.top(), items);
          break;
        }
        case 0x29: // EMPTY_TUPLE
          this.stack.push(Object.freeze([]));
          break;
        case 0x74: {
          // TUPLE
          const items = this.popMark();
          this.stack.push(Object.freeze(items));
          break;
        }
        case 0x85: // TUPLE1
          this.stack.push(Object.freeze([this.pop()]));
          break;
        case 0x86: {
          // TUPLE2
          const b = this.pop();
          const a = this.pop();
          this.stack.push(Object.freeze([a, b]));
          break;
        }
        case 0x87: {
          // TUPLE3
          const c = this.pop();
          const b = this.pop();
          const a = this.pop();
          this.stack.push(Object.freeze([a, b, c]));
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.stack.push(new Map());
          break;
        case 0x64: {
          // DICT
          const items = this.popMark();
          const m = new Map();
          this.setItems(m, items);
          this.stack.push(m);
          break;
        }
        case 0x73: {
          // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.setItems(this.top(), [k, v]);
          break;
        }
        case 0x75: {
          // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x8f: // EMPTY_SET
          this.stack.push(new Set());
          break;
        case 0x90: {
          // ADDITEMS
          const items = this.popMark();
          const s = this.top();
          if (!(s instanceof Set)) this.fail("ADDITEMS on a non-set");
          for (const x of items) (s as Set<unknown>).add(x);
          break;
        }
        case 0x91: {
          // FROZENSET
          const items = this.popMark();
          this.stack.push(new Set(items));
          break;
        }
        // memo
        case 0x70: // PUT
          this.memo.set(this.parseMemoKey(this.line()), this.top());
          break;
        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.u32(), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        case 0x67: // GET
          this.stack.push(this.memoGet(this.parseMemoKey(this.line())));
          break;
        case 0x68: // BINGET
          this.stack.push(this.memoGet(this.u8()));
          break;
        case 0x6a: // LONG_BINGET
          this.stack.push(this.memoGet(this.u32()));
          break;
        // globals and calls: all routed through the allowlist
        case 0x63: {
          // GLOBAL
          const module = this.line();
          const name = this.line();
          this.stack.push(this.global(module, name));
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== "string" || typeof name !== "string") this.fail("STACK_GLOBAL needs two strings");
          this.stack.push(this.global(module as string, name as string));
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop();
          const fn = this.pop();
          if (!(fn instanceof PyGlobal)) this.fail(`REDUCE on a non-callable at byte ${at}`);
          if (!Array.isArray(args)) this.fail(`REDUCE arguments are not a tuple at byte ${at}`);
          this.stack.push(this.call(fn as PyGlobal, args as unknown[]));
          break;
        }
        case 0x81: // NEWOBJ
        case 0x92: {
          // NEWOBJ_EX
          if (op === 0x92) this.pop(); // kwargs
          const args = this.pop();
          const cls = this.pop();
          if (!(cls instanceof PyGlobal)) this.fail(`NEWOBJ on a non-class at byte ${at}`);
          const full = (cls as PyGlobal).fullName;
          if (full === "collections.OrderedDict") this.stack.push(new Map());
          else if (PLACEHOLDER_CLASSES.has(full)) this.stack.push(new PyObject(full, Array.isArray(args) ? args : []));
          else this.fail(`${full} cannot be instantiated`);
          break;
        }
        case 0x62: {
          // BUILD: state for an object already made; only placeholders keep it
          const state = this.pop();
          const obj = this.top();
          if (obj instanceof PyObject) obj.state = state;
          else if (!(obj instanceof Map) && !(obj instanceof TorchTensorRef))
            this.fail(`BUILD on an unsupported object at byte ${at}`);
          break;
        }
        case 0x50: // PERSID
          this.stack.push(this.persistent(this.line()));
          break;
        case 0x51: // BINPERSID
          this.stack.push(this.persistent(this.pop()));
          break;
        case 0x69: // INST
        case 0x6f: // OBJ
          this.fail(`opcode ${op === 0x69 ? "INST" : "OBJ"} (old-style instance creation) is not allowed`);
          break;
        case 0x82:
        case 0x83:
        case 0x84:
          this.fail("extension registry opcodes (EXT1/2/4) are not allowed");
          break;
        case 0x97:
        case 0x98:
          this.fail("out-of-band buffers are not supported");
          break;
        default:
          this.fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")} at byte ${at}`);
      }
    }
  }

  private persistent(pid: unknown): unknown {
    if (!this.persistentLoad) this.fail("persistent id outside the main pickle");
    return this.persistentLoad!(pid, this);
  }
  private parseIntText(s: string): number | bigint {
    if (!/^[-+]?\d{1,700}$/.test(s.trim())) this.fail("bad integer text");
    return toNumber(BigInt(s.trim()));
  }
  private parseMemoKey(s: string): number {
    if (!/^\d{1,10}$/.test(s)) this.fail("bad memo key");
    return Number(s);
  }
  private parseQuoted(s: string): string {
    const t = s.trim();
    const q = t[0];
    if ((q !== "'" && q !== '"') || t.length < 2 || t[t.length - 1] !== q) this.fail("STRING is not quoted");
    return t.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|[\\'"nrt0])/g, (_, e: string) => {
      if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
      return ({ n: "\n", r: "\r", t: "\t", "0": "\0" } as Record<string, string>)[e] ?? e;
    });
  }
}

function toNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (m, u4?: string, u8?: string) => {
    const cp = parseInt(u4 ?? u8 ?? "", 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}
