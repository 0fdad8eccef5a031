/**
 * Durable file writes, strict: every step is checked and any failure throws (the caller decides how
 * to report it). Used by the file cache backend and by `kubeconfig redirect|restore`.
 */
import { randomUUID } from "node:crypto";
import { basename, dirname, join } from "node:path";

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
}

/** Creates `path`, which must not exist, with exactly `mode` (umask ignored); writes and fsyncs it. */
export async function writeNewFile(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const f = await Deno.open(path, { write: true, createNew: true, mode });
  try {
    await Deno.chmod(path, mode);
    await writeAll(f, data);
    await f.sync();
  } finally {
    f.close();
  }
}

/** Fsyncs a directory: a rename or a new entry is durable only once its directory is. */
export async function syncDir(path: string): Promise<void> {
  const f = await Deno.open(path, { read: true });
  try {
    await f.sync();
  } finally {
    f.close();
  }
}

/** Options for {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** The file's permission bits, exactly (default 0600). */
  mode?: number;
  /** Name prefix of the temporary file beside the target (default `.<name>.tmp-`). */
  tmpPrefix?: string;
}

/**
 * Replaces `path` atomically and durably: a temp file in the same directory, fsynced, renamed over
 * `path`, then the directory fsynced. Readers see the old or the new content, never a mix, and a
 * crash leaves one of the two. The temp file is removed when a step fails.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const dir = dirname(path);
  const tmp = join(dir, (opts.tmpPrefix ?? `.${basename(path)}.tmp-`) + randomUUID());
  try {
    await writeNewFile(tmp, bytes, opts.mode ?? 0o600);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}
