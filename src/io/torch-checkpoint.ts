/**
 * PyTorch checkpoints (.ckpt, .bin, .pt) without Python and without running anything: both torch.save
 * formats, zip (`<dir>/data.pkl` + `<dir>/data/<key>`) and legacy (magic number, protocol, sys info, main
 * pickle, storage keys, raw storages), around the restricted unpickler in unpickler.ts.
 */
import { AutoencoderKLError } from "../errors.js";
import { FLOAT_DTYPE_SIZE, type FloatDtype, floatBytesToF32 } from "../tensor/dtype.js";
import { MAX_TENSOR_ELEMENTS, Tensor } from "../tensor/tensor.js";
import { PyGlobal, STORAGE_DTYPES, type TorchStorage, TorchTensorRef, Unpickler } from "./unpickler.js";
import {
  type DirectoryEntry,
  entryBytes,
  isZip,
  openZip,
  type RangeReader,
  readZipDirectory,
  readZipEntries,
  storedEntryBytes,
  type ZipArchive,
} from "./zip.js";

export { Unpickler } from "./unpickler.js";

// ---------------------------------------------------------------------------------------------
// torch.save formats

/** The legacy format's first pickle: 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

function storageFromPid(pid: unknown, u: Unpickler, legacy: boolean): TorchStorage {
  if (!Array.isArray(pid) || pid[0] !== "storage") {
    u.fail(`unsupported persistent id ${Array.isArray(pid) ? JSON.stringify(String(pid[0])) : typeof pid}`);
  }
  const [, cls, key, , numel, view] = pid as unknown[];
  if (!(cls instanceof PyGlobal) || cls.module !== "torch" || !Object.hasOwn(STORAGE_DTYPES, cls.name)) {
    u.fail(`unsupported storage type ${cls instanceof PyGlobal ? cls.fullName : typeof cls}`);
  }
  if (typeof key !== "string") u.fail("storage key is not a string");
  if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0)
    u.fail(`storage ${key as string}: bad element count`);
  const { dtype, size } = STORAGE_DTYPES[(cls as PyGlobal).name];
  const s: TorchStorage = {
    key: key as string,
    storageClass: (cls as PyGlobal).name,
    dtype,
    elementSize: size,
    numel: numel as number,
    root: key as string,
    rootOffset: 0,
  };
  if (legacy && view !== null && view !== undefined) {
    // (view_key, offset, view_size): a window on the root storage `key`.
    const [viewKey, offset, viewSize] = view as unknown[];
    if (
      !Array.isArray(view) ||
      typeof viewKey !== "string" ||
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(viewSize)
    ) {
      u.fail("malformed storage view");
    }
    if (
      (offset as number) < 0 ||
      (viewSize as number) < 0 ||
      (offset as number) + (viewSize as number) > (numel as number)
    ) {
      u.fail(`storage view ${viewKey as string} lies outside its root`);
    }
    return { ...s, key: viewKey as string, numel: viewSize as number, rootOffset: offset as number };
  }
  return s;
}

/** A parsed checkpoint: tensor descriptions by name, and how to turn one into float32. */
export interface TorchCheckpoint {
  /** The unpickled root object (for callers that want more than the state dict). */
  root: unknown;
  /** Tensors of the state dict (the root's "state_dict" when it has one), in file order. */
  tensors: Map<string, TorchTensorRef>;
  /** Names of state-dict entries that are not tensors (e.g. counters). */
  other: string[];
  load(name: string): Tensor;
}

/** Raw bytes of each root storage, and their claimed element counts. */
type StorageBytes = (root: string, dtypeSize: number, numel: number) => Uint8Array;

function collectTensors(root: unknown, source: string): { tensors: Map<string, TorchTensorRef>; other: string[] } {
  let dict: unknown = root;
  if (root instanceof Map && root.get("state_dict") instanceof Map) dict = root.get("state_dict");
  if (!(dict instanceof Map))
    throw new AutoencoderKLError(source, "checkpoint is not a dict of tensors (nor has a state_dict)");
  const tensors = new Map<string, TorchTensorRef>();
  const other: string[] = [];
  for (const [k, v] of dict as Map<unknown, unknown>) {
    if (typeof k === "string" && v instanceof TorchTensorRef) tensors.set(k, v);
    else other.push(String(k));
  }
  return { tensors, other };
}

function materialize(name: string, ref: TorchTensorRef, storageBytes: StorageBytes, source: string): Tensor {
  const where = `tensor ${JSON.stringify(name)}`;
  const { storage, shape, stride } = ref;
  if (!Object.hasOwn(FLOAT_DTYPE_SIZE, storage.dtype)) {
    throw new AutoencoderKLError(
      source,
      `${where}: dtype ${storage.dtype} (torch.${storage.storageClass}) cannot be loaded as float32`,
    );
  }
  const dtype = storage.dtype as FloatDtype;
  let count = 1;
  let span = 0; // largest element index reached, relative to the offset
  for (let i = 0; i < shape.length; i++) {
    count *= shape[i];
    if (shape[i] > 0) span += (shape[i] - 1) * stride[i];
  }
  if (count > MAX_TENSOR_ELEMENTS)
    throw new AutoencoderKLError(source, `${where}: ${count} elements exceed the ${MAX_TENSOR_ELEMENTS}-element limit`);
  if (count === 0) return new Tensor(new Float32Array(0), shape);
  if (ref.offset + span >= storage.numel) {
    throw new AutoencoderKLError(
      source,
      `${where}: size [${shape.join(", ")}] at offset ${ref.offset} reaches past its storage of ${storage.numel} elements`,
    );
  }
  const es = storage.elementSize;
  const all = storageBytes(storage.root, es, storage.rootOffset + storage.numel);
  const first = storage.rootOffset + ref.offset;
  const src = all.subarray(first * es, (first + span + 1) * es);
  let contiguous = true;
  for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) contiguous = false;
    expect *= shape[i];
  }
  if (contiguous) return new Tensor(floatBytesToF32(src, dtype, count), shape);
  // Non-contiguous (a saved view): convert the window, then gather in row-major order.
  const window = floatBytesToF32(src, dtype, span + 1);
  const out = new Float32Array(count);
  const idx = new Array<number>(shape.length).fill(0);
  let p = 0;
  for (let n = 0; n < count; n++) {
    out[n] = window[p];
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]++;
      p += stride[d];
      if (idx[d] < shape[d]) break;
      p -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return new Tensor(out, shape);
}

function zipDataDir(names: Iterable<string>, source: string): string {
  const pkl = [...names].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length !== 1)
    throw new AutoencoderKLError(source, `torch zip archive needs exactly one <dir>/data.pkl, found ${pkl.length}`);
  return pkl[0].slice(0, -"data.pkl".length);
}

/** Parse a torch zip given its entry names and a way to get an entry's bytes (whole file or prefetched ranges). */
function parseZip(
  source: string,
  names: ReadonlySet<string>,
  entryData: (name: string) => Uint8Array,
): TorchCheckpoint {
  const dir = zipDataDir(names, source);
  if (names.has(`${dir}byteorder`) && new TextDecoder().decode(entryData(`${dir}byteorder`)).trim() !== "little") {
    throw new AutoencoderKLError(source, "big-endian torch checkpoints are not supported");
  }
  const pkl = entryData(`${dir}data.pkl`);
  const seen = new Map<string, TorchStorage>();
  const u = new Unpickler(pkl, 0, source, (pid, up) => {
    const s = storageFromPid(pid, up, false);
    const known = seen.get(s.key);
    if (known) return known; // shared storage (e.g. tied weights): one object, as in torch
    seen.set(s.key, s);
    return up.markStorage(s);
  });
  const root = u.load();
  const { tensors, other } = collectTensors(root, source);
  const storageBytes: StorageBytes = (key, es, numel) => {
    const name = `${dir}data/${key}`;
    if (!names.has(name))
      throw new AutoencoderKLError(source, `storage ${JSON.stringify(key)} is missing from the archive`);
    const b = entryData(name);
    if (b.length < numel * es)
      throw new AutoencoderKLError(source, `storage ${JSON.stringify(key)} has ${b.length} bytes, needs ${numel * es}`);
    return b;
  };
  return { root, tensors, other, load: (name) => guarded(source, () => load(name, tensors, storageBytes, source)) };
}

/** Entry names of a zip, for parseZip. */
const zipNames = (zip: ZipArchive): ReadonlySet<string> => new Set(zip.entries.keys());

/** A torch zip read by ranges: the directory and data.pkl now, storages when `prefetch` asks for them. */
export interface RangedTorchCheckpoint extends TorchCheckpoint {
  /** Read the storages behind these tensors (coalesced ranges); `load` works for them afterwards. */
  prefetch(names: Iterable<string>, onProgress?: (loaded: number, total: number) => void): Promise<void>;
}

export async function readTorchZipRanged(ra: RangeReader, source = "checkpoint"): Promise<RangedTorchCheckpoint> {
  const directory = await readZipDirectory(ra, source);
  const names = new Set(directory.keys());
  const dir = zipDataDir(names, source);
  const fetched = await readZipEntries(
    ra,
    [`${dir}data.pkl`, `${dir}byteorder`].flatMap((n) => directory.get(n) ?? []),
    source,
  );
  const entryData = (name: string): Uint8Array => {
    const b = fetched.get(name);
    if (!b) throw new AutoencoderKLError(source, `zip entry ${JSON.stringify(name)} was not read (prefetch it first)`);
    return b;
  };
  const ckpt = guarded(source, () => parseZip(source, names, entryData));
  return {
    ...ckpt,
    async prefetch(tensorNames, onProgress) {
      const wanted = new Map<string, DirectoryEntry>();
      for (const n of tensorNames) {
        const ref = ckpt.tensors.get(n);
        const entry = ref && directory.get(`${dir}data/${ref.storage.root}`);
        if (entry && !fetched.has(entry.name)) wanted.set(entry.name, entry);
      }
      const total = [...wanted.values()].reduce((n, e) => n + e.compressedSize, 0);
      let loaded = 0;
      onProgress?.(0, total);
      const read = await readZipEntries(ra, [...wanted.values()], source, (n) => onProgress?.((loaded += n), total));
      for (const [k, v] of read) fetched.set(k, v);
    },
  };
}

function load(name: string, tensors: Map<string, TorchTensorRef>, storageBytes: StorageBytes, source: string): Tensor {
  const ref = tensors.get(name);
  if (!ref) throw new AutoencoderKLError(source, `no tensor ${JSON.stringify(name)} in the checkpoint`);
  return materialize(name, ref, storageBytes, source);
}

function parseLegacy(bytes: Uint8Array, source: string): TorchCheckpoint {
  const magic = new Unpickler(bytes, 0, source);
  if (magic.load() !== LEGACY_MAGIC)
    throw new AutoencoderKLError(source, "not a torch checkpoint (legacy magic number missing)");
  const protocol = new Unpickler(bytes, magic.pos, source);
  const version = protocol.load();
  if (version !== 1001) throw new AutoencoderKLError(source, `unsupported legacy torch protocol ${String(version)}`);
  const sys = new Unpickler(bytes, protocol.pos, source);
  const sysInfo = sys.load();
  if (sysInfo instanceof Map && sysInfo.get("little_endian") === false) {
    throw new AutoencoderKLError(source, "big-endian torch checkpoints are not supported");
  }
  // Root storages by key; pid[4] is always the root's element count, views or not.
  const roots = new Map<string, { elementSize: number; numel: number }>();
  const main = new Unpickler(bytes, sys.pos, source, (pid, up) => {
    const s = storageFromPid(pid, up, true);
    const rootNumel = (pid as unknown[])[4] as number;
    const known = roots.get(s.root);
    if (!known) roots.set(s.root, { elementSize: s.elementSize, numel: rootNumel });
    else if (known.elementSize !== s.elementSize || known.numel !== rootNumel)
      up.fail(`storage ${s.root} described two ways`);
    return up.markStorage(s);
  });
  const root = main.load();
  const keysPickle = new Unpickler(bytes, main.pos, source);
  const keys = keysPickle.load();
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
    throw new AutoencoderKLError(source, "legacy checkpoint: storage key list is malformed");
  }
  // Raw storages follow in key order, each as an 8-byte element count then the elements.
  const data = new Map<string, Uint8Array>();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = keysPickle.pos;
  for (const key of keys as string[]) {
    const s = roots.get(key);
    if (!s)
      throw new AutoencoderKLError(
        source,
        `legacy checkpoint: storage ${JSON.stringify(key)} is not used by any tensor`,
      );
    if (p + 8 > bytes.length)
      throw new AutoencoderKLError(source, `legacy checkpoint: truncated before storage ${JSON.stringify(key)}`);
    const lo = dv.getUint32(p, true);
    const hi = dv.getUint32(p + 4, true);
    const numel = hi * 2 ** 32 + lo;
    p += 8;
    if (numel !== s.numel) {
      throw new AutoencoderKLError(
        source,
        `legacy checkpoint: storage ${JSON.stringify(key)} holds ${numel} elements, the pickle said ${s.numel}`,
      );
    }
    const n = numel * s.elementSize;
    if (p + n > bytes.length)
      throw new AutoencoderKLError(
        source,
        `legacy checkpoint: storage ${JSON.stringify(key)} runs past the end of the file`,
      );
    data.set(key, bytes.subarray(p, p + n));
    p += n;
  }
  const { tensors, other } = collectTensors(root, source);
  const storageBytes: StorageBytes = (key, es, numel) => {
    const b = data.get(key);
    if (!b) throw new AutoencoderKLError(source, `legacy checkpoint: storage ${JSON.stringify(key)} has no data`);
    if (b.length < numel * es)
      throw new AutoencoderKLError(source, `legacy checkpoint: storage ${JSON.stringify(key)} is too small`);
    return b;
  };
  return { root, tensors, other, load: (name) => guarded(source, () => load(name, tensors, storageBytes, source)) };
}

/** Only AutoencoderKLError leaves this module, whatever a hostile file does to the parser. */
function guarded<T>(source: string, fn: () => T): T {
  try {
    return fn();
  } catch (cause) {
    if (cause instanceof AutoencoderKLError) throw cause;
    throw new AutoencoderKLError(source, `malformed checkpoint (${(cause as Error)?.message ?? String(cause)})`, {
      cause,
    });
  }
}

/** Parse a torch.save file (zip or legacy). Tensors are described, not converted. Stored zips only. */
export function readTorchCheckpoint(bytes: Uint8Array, source = "checkpoint"): TorchCheckpoint {
  return guarded(source, () => parseCheckpoint(bytes, source));
}

function parseCheckpoint(bytes: Uint8Array, source: string): TorchCheckpoint {
  if (isZip(bytes)) {
    const zip = openZip(bytes, source);
    return parseZip(source, zipNames(zip), (name) => storedEntryBytes(zip, zip.entries.get(name)!));
  }
  if (bytes.length >= 2 && bytes[0] === 0x80) return parseLegacy(bytes, source);
  throw new AutoencoderKLError(source, "not a PyTorch checkpoint (neither a zip archive nor a pickle)");
}

/** As readTorchCheckpoint, also accepting deflate-compressed zip entries (inflated up front). */
export async function readTorchCheckpointAsync(bytes: Uint8Array, source = "checkpoint"): Promise<TorchCheckpoint> {
  if (!isZip(bytes)) return readTorchCheckpoint(bytes, source);
  const zip = openZip(bytes, source);
  const inflated = new Map<string, Uint8Array>();
  for (const e of zip.entries.values()) if (e.method !== 0) inflated.set(e.name, await entryBytes(zip, e));
  return guarded(source, () =>
    parseZip(source, zipNames(zip), (name) => inflated.get(name) ?? storedEntryBytes(zip, zip.entries.get(name)!)),
  );
}

export interface ReadTorchOptions {
  /** Return true for the tensors to convert; the others are never converted. */
  filter?: (name: string) => boolean;
}

/** A torch checkpoint's state dict as float32 tensors (unwrapping a top-level "state_dict"). */
export function readTorchStateDict(
  bytes: Uint8Array,
  source = "checkpoint",
  options: ReadTorchOptions = {},
): Map<string, Tensor> {
  const ckpt = readTorchCheckpoint(bytes, source);
  const out = new Map<string, Tensor>();
  for (const name of ckpt.tensors.keys()) if (!options.filter || options.filter(name)) out.set(name, ckpt.load(name));
  return out;
}
