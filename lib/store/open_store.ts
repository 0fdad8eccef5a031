/**
 * Opens the persistent cache in a directory with the chosen backend.
 */
import { ConfigError, errMessage } from "../config/errors.ts";
import { openFileStore } from "./file_store.ts";
import { openSqliteStore } from "./sqlite_store.ts";
import type { Store } from "./store.ts";

export interface OpenStoreOptions {
  backend: "sqlite" | "file";
  /** The cache directory; created 0700 if missing. */
  dir: string;
}

function reason(e: unknown): string {
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  return errMessage(e);
}

/**
 * Creates `dir` (0700) if missing, checks it is a writable directory and opens the store in it.
 * Throws ConfigError with a one-line message when the directory cannot be used.
 */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const { dir, backend } = opts;
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new ConfigError(`cache directory ${dir} exists and is not a directory`);
    }
    throw new ConfigError(`cannot create cache directory ${dir}: ${reason(e)}`);
  }
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new ConfigError(`cache directory ${dir} is not a directory`);
    // The cache holds other identities' data: nobody else may read it.
    if (info.mode !== null && (info.mode & 0o077) !== 0) await Deno.chmod(dir, 0o700);
    // Prove it is writable now rather than on the first cached response.
    const probe = `${dir}/#tmp-probe-${crypto.randomUUID()}`;
    await Deno.writeFile(probe, new Uint8Array(), { mode: 0o600 });
    await Deno.remove(probe);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cache directory ${dir} is not usable: ${reason(e)}`);
  }
  const open = backend === "sqlite" ? openSqliteStore : backend === "file" ? openFileStore : undefined;
  if (!open) {
    throw new ConfigError(`unknown cache backend ${JSON.stringify(backend)} (expected sqlite or file)`);
  }
  try {
    return await open(dir);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot open the ${backend} cache in ${dir}: ${reason(e)}`);
  }
}
