// Output files of the CLI: never over an existing file unless the user asked (--force, or -o naming it),
// and never half-written: bytes go to a temporary name beside the target, then one rename (or link)
// puts the whole file in place, so a failure or Ctrl-C leaves either nothing or the previous file.
import { existsSync, unlinkSync } from "node:fs";
import { type FileHandle, link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { AutoencoderKLError } from "../index.js";

/** Where a command writes one file, decided before any work is done. */
export interface OutputTarget {
  path: string;
  /** True when the user named it (-o, --compare) or passed --force: replacing an existing file is then asked for. */
  mayReplace: boolean;
}

/**
 * Resolves an output: `named` (the -o value) when given, else `defaultName`. A default name that exists
 * is refused before the model runs, unless --force; so is one that is an input of the same command.
 */
export function planOutput(
  named: string | undefined,
  defaultName: string,
  force: boolean,
  inputs: string[] = [],
): OutputTarget {
  if (named !== undefined) return { path: resolve(named), mayReplace: true };
  const path = resolve(defaultName);
  if (inputs.some((i) => resolve(i) === path)) {
    throw new AutoencoderKLError(path, "the default output name is the input file; name the output with -o");
  }
  if (!force && existsSync(path)) {
    throw new AutoencoderKLError(path, "already exists: pass --force to overwrite it, or -o to name another file");
  }
  return { path, mayReplace: force };
}

let sequence = 0;

/** Writes bytes to the target through a temporary file; cleans the temporary file up on any failure or SIGINT. */
export async function writeOutput(target: OutputTarget, bytes: Uint8Array): Promise<void> {
  const { path } = target;
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${++sequence}.tmp`);
  // Ctrl-C while the bytes are on their way: remove the temporary file, then die of SIGINT as usual. The
  // file is created on libuv's thread pool, so a Ctrl-C during that open waits for the open to settle:
  // unlinking first would let the open land afterwards and leave the file behind.
  let opening = true;
  let interrupted = false;
  const die = () => {
    process.removeListener("SIGINT", onSigint);
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed into place
    }
    process.kill(process.pid, "SIGINT");
  };
  const onSigint = () => {
    interrupted = true;
    if (!opening) die();
  };
  process.on("SIGINT", onSigint);
  let handle: FileHandle | undefined;
  try {
    try {
      handle = await open(tmp, "wx");
    } finally {
      opening = false;
      if (interrupted) die();
    }
    await handle.writeFile(bytes);
    await handle.close();
    handle = undefined;
    if (target.mayReplace) {
      await rename(tmp, path);
    } else {
      // link() refuses an existing target atomically: a file that appeared since planOutput is kept.
      try {
        await link(tmp, path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST")
          throw new AutoencoderKLError(
            path,
            "already exists: pass --force to overwrite it, or -o to name another file",
            { cause: e },
          );
        if (existsSync(path)) throw e;
        await rename(tmp, path); // file systems without hard links
      }
      await unlink(tmp).catch(() => {});
    }
  } catch (e) {
    await handle?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (e instanceof AutoencoderKLError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "EISDIR"
        ? "is a folder"
        : code === "ENOENT"
          ? "its folder does not exist"
          : code === "EACCES"
            ? "permission denied"
            : (e as Error).message;
    throw new AutoencoderKLError(path, `cannot write: ${why}`, { cause: e });
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
}
