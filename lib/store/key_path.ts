/**
 * Maps cache keys and list item keys to file names for the file backend.
 *
 * Key segments are filesystem-safe by contract (see store.ts). The backend's own files all start
 * with `#`, a character no segment may contain, so they can never collide with a key.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { CacheKey } from "./store.ts";
import { isSegment, percentEncode } from "./segment.ts";

/** Throws when a key breaks the segment contract: a bug in the caller, never user input. */
export function assertKey(key: CacheKey): void {
  for (const s of [key.identity, key.resource, key.namespace, key.name]) {
    if (!isSegment(s)) throw new Error(`invalid cache key segment ${JSON.stringify(s)}`);
  }
}

/** `<root>/<identity>/<resource>/<namespace>/<name>`. */
export function keyPath(root: string, key: CacheKey): string {
  assertKey(key);
  return join(root, key.identity, key.resource, key.namespace, key.name);
}

/** The directory holding the key's file or list directory. */
export function keyDir(root: string, key: CacheKey): string {
  assertKey(key);
  return join(root, key.identity, key.resource, key.namespace);
}

const MAX_ITEM_NAME = 180;
const SAFE_ITEM_CHAR = /^[A-Za-z0-9_-]$/;

/**
 * A file name for a list item key (`namespace/name`): every byte outside [A-Za-z0-9_-] becomes `%XX`
 * (so `.`, `/` and `#` never appear raw), or a sha256 when that is too long. The item file records the
 * original key, so the name only has to be unique, not reversible.
 */
export function itemFileName(itemKey: string): string {
  const out = percentEncode(itemKey, (ch) => SAFE_ITEM_CHAR.test(ch), MAX_ITEM_NAME);
  if (out.length === 0 || out.length > MAX_ITEM_NAME) {
    return "%h-" + createHash("sha256").update(itemKey).digest("hex");
  }
  return out;
}
