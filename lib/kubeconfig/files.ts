/**
 * Small file helpers for editing system configuration safely: atomic replace (temp + fsync +
 * rename + directory fsync) and mode-preserving reads.
 */
import { dirname } from "node:path";
import { ConfigError } from "../config/errors.ts";

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

/**
 * Replaces `path` with `data` atomically: readers see the old or the new content, never a mix,
 * and a crash leaves one of the two on disk. The file ends with exactly `mode` (umask ignored).
 */
export async function writeAtomic(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const dir = dirname(path);
  const tmp = `${dir}/.${path.slice(dir.length + 1)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true, mode });
    try {
      await writeAll(f, bytes);
      await Deno.chmod(tmp, mode);
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
    await syncDir(dir);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    if (err instanceof ConfigError) throw err;
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

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}

async function syncDir(dir: string): Promise<void> {
  // A rename is only durable once the directory entry is; some filesystems refuse fsync on a directory.
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // best effort
  }
}

/** The message of an unknown thrown value. */
export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
