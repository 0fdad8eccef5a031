/** File helpers for editing system configuration: reads that tell absence apart, modes, atomic replace. */
import { ConfigError, errMessage } from "../config/errors.ts";
import { writeFileAtomic } from "../files/atomic_write.ts";

/** Reads a file's bytes, or null when it does not exist. Other errors become ConfigError. */
export async function readIfExists(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw new ConfigError(`cannot read ${path}: ${errMessage(err)}`);
  }
}

/** The permission bits of a file, or null when it does not exist. */
export async function modeOf(path: string): Promise<number | null> {
  try {
    const st = await Deno.stat(path);
    return (st.mode ?? 0o600) & 0o7777;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw new ConfigError(`cannot stat ${path}: ${errMessage(err)}`);
  }
}

/** Replaces `path` atomically and durably with exactly `mode`; a failure is a ConfigError naming the file. */
export async function replaceFile(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, data, { mode });
  } catch (err) {
    throw new ConfigError(`cannot write ${path}: ${errMessage(err)}`);
  }
}

/** Creates a directory (and parents) with `mode` when missing. */
export async function ensureDir(path: string, mode: number): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true, mode });
  } catch (err) {
    throw new ConfigError(`cannot create directory ${path}: ${errMessage(err)}`);
  }
}
