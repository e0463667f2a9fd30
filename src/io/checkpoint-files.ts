// Exact tiling's checkpoints in temporary files (Node only: imported from autoencoderkl/node and the CLI, never
// from the core). The operating system's page cache holds them, so they leave the process's memory; a machine
// short of memory writes them to disk instead of failing.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoencoderKLError } from "../errors.js";
import type { CheckpointArea, CheckpointStorage } from "../models/autoencoder-kl/exact-tiling.js";

/**
 * Checkpoints in a fresh folder under `dir` (default: the system's temporary folder), deleted when the run
 * ends. Three files take turns: a checkpoint is written while the previous two may be read, then the oldest
 * one's file is reused for the next, so disk use stays at three checkpoints.
 */
export function fileCheckpointStorage(dir: string = tmpdir()): CheckpointStorage {
  return {
    open(): CheckpointArea {
      let folder: string;
      try {
        folder = mkdtempSync(join(dir, "autoencoderkl-checkpoints-"));
      } catch (e) {
        throw new AutoencoderKLError(dir, `cannot create a folder for checkpoints: ${(e as Error).message}`, {
          cause: e,
        });
      }
      const fds = ["a", "b", "c"].map((name) => openSync(join(folder, `${name}.f32`), "w+"));
      // positions are in floats; the file is in the top bits of the position's range (2^40 floats apart)
      const SPAN = 2 ** 40;
      let current = 0;
      const ends = [0, 0, 0];
      const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      return {
        write(data: Float32Array): number {
          const pos = ends[current];
          const bytes = bytesOf(data);
          for (let done = 0; done < bytes.length; )
            done += writeSync(fds[current], bytes, done, bytes.length - done, pos * 4 + done);
          ends[current] += data.length;
          return current * SPAN + pos;
        },
        read(position: number, out: Float32Array): void {
          const file = Math.floor(position / SPAN);
          const at = (position - file * SPAN) * 4;
          const bytes = bytesOf(out);
          for (let done = 0; done < bytes.length; ) {
            const n = readSync(fds[file], bytes, done, bytes.length - done, at + done);
            if (n === 0) throw new AutoencoderKLError(folder, "checkpoint file ended early");
            done += n;
          }
        },
        nextCheckpoint(): void {
          current = (current + 1) % fds.length;
          ends[current] = 0;
        },
        close(): void {
          for (const fd of fds) closeSync(fd);
          rmSync(folder, { recursive: true, force: true });
        },
      };
    },
  };
}
