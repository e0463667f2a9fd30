/**
 * A state dict read tensor by tensor: every tensor's shape up front (from a file's header), the values on
 * demand. The model validates the shapes before it touches device memory, then takes each tensor as it
 * arrives and lets it go, so loading a safetensors file by ranges never holds the whole file, nor a whole
 * f32 state dict, on the host.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { RandomAccessSource } from "./source.js";

export interface TensorStream {
  /** Every tensor the source offers, by (diffusers) key, in file order. */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /** Reads the tensors named in `keys` (no others are converted), handing each to `take` once. */
  read(keys: ReadonlySet<string>, take: (key: string, tensor: Tensor) => void): Promise<void>;
  /** Releases the file or connection (idempotent). */
  close(): Promise<void>;
}

/** A state dict already in memory, as a stream. */
export function tensorStreamOf(tensors: ReadonlyMap<string, Tensor>): TensorStream {
  return {
    shapes: new Map([...tensors].map(([k, t]) => [k, t.shape])),
    async read(keys, take) {
      for (const [k, t] of tensors) if (keys.has(k)) take(k, t);
    },
    close: async () => {},
  };
}

/** Reads a whole stream into a Map (readers that return state dicts). */
export async function collectTensorStream(stream: TensorStream): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  try {
    await stream.read(new Set(stream.shapes.keys()), (k, t) => out.set(k, t));
  } finally {
    await stream.close();
  }
  // in the stream's (file) order
  return new Map([...stream.shapes.keys()].filter((k) => out.has(k)).map((k) => [k, out.get(k)!]));
}

/** Closes a random-access source once, whichever of read's end or close() comes first. */
export function closeOnce(ra: RandomAccessSource): () => Promise<void> {
  let closed: Promise<void> | null = null;
  return () => (closed ??= ra.close());
}
