/**
 * Offline LIST paging (`limit` / `continue`) over a cached list, with our own continue tokens.
 *
 * A token is base64url(JSON {v: 1, k: <hash of the list id>, rv: <list resourceVersion>, after:
 * <key of the last item served>}). Pages resume by key, not by offset: items inserted or removed
 * between pages cause no duplicates and no skips of items present across both pages.
 *
 * When the list's resourceVersion moved since the first page (watch events were applied), paging
 * continues by key by default ("continue"): the pages are then not one snapshot, but every item is
 * served once. With `onVersionChange: "expire"` such a token is refused with a 410 Expired instead,
 * as the apiserver does for a compacted token; client-go's pager then relists without paging.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

/** A bad continue token: `status` 400 (BadRequest) or 410 (Expired), and a Status-ready message. */
export class PagingError extends Error {
  override name = "PagingError";
  constructor(message: string, readonly status: 400 | 410, readonly reason: "BadRequest" | "Expired") {
    super(message);
  }
}

export interface PageOptions {
  /** Page size; absent or <= 0 means everything that is left. */
  limit?: number;
  /** The client's `continue` parameter ("" or absent for the first page). */
  continue?: string;
  /** Names the list (e.g. cacheKeyString of its key, identity included): tokens only fit that list. */
  listKeyId: string;
  /** The list's current resourceVersion. */
  resourceVersion: string;
  /** What to do with a token issued at another resourceVersion; default "continue". */
  onVersionChange?: "continue" | "expire";
}

export interface Page<T> {
  items: T[];
  /** Set when more items follow. */
  continue?: string;
  /** Items after this page, set together with `continue`. */
  remainingItemCount?: number;
}

interface Token {
  v: 1;
  k: string;
  rv: string;
  after: string;
}

const EXPIRED_MESSAGE = "The provided continue parameter is too old to display a consistent list result. " +
  "You can start a new list without the continue parameter.";

function listHash(listKeyId: string): string {
  return createHash("sha256").update(listKeyId).digest("hex").slice(0, 16);
}

function encodeToken(t: Token): string {
  return Buffer.from(JSON.stringify(t), "utf8").toString("base64url");
}

function decodeToken(s: string): Token {
  const bad = () =>
    new PagingError(`continue key is not valid: ${JSON.stringify(s.slice(0, 64))}`, 400, "BadRequest");
  if (!/^[A-Za-z0-9_-]+$/.test(s)) throw bad();
  let t: unknown;
  try {
    t = JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (
    typeof t !== "object" || t === null || (t as Token).v !== 1 || typeof (t as Token).k !== "string" ||
    typeof (t as Token).rv !== "string" || typeof (t as Token).after !== "string"
  ) throw bad();
  return t as Token;
}

/**
 * One page of `items`, which must be sorted ascending by `keyOf` (plain string order, as the store
 * returns them). Throws PagingError for a malformed token, a token of another list, or (with
 * `onVersionChange: "expire"`) a token of another resourceVersion.
 */
export function paginate<T>(items: T[], keyOf: (t: T) => string, opts: PageOptions): Page<T> {
  const k = listHash(opts.listKeyId);
  let start = 0;
  if (opts.continue) {
    const token = decodeToken(opts.continue);
    if (token.k !== k) {
      throw new PagingError(
        "continue key is not valid: it was issued for a different list",
        400,
        "BadRequest",
      );
    }
    if (token.rv !== opts.resourceVersion && opts.onVersionChange === "expire") {
      throw new PagingError(EXPIRED_MESSAGE, 410, "Expired");
    }
    start = items.findIndex((item) => keyOf(item) > token.after);
    if (start < 0) start = items.length;
  }
  const limit = opts.limit !== undefined && opts.limit > 0 ? Math.floor(opts.limit) : Infinity;
  const end = Math.min(items.length, start + limit);
  const page = items.slice(start, end);
  if (end >= items.length || page.length === 0) return { items: page };
  const token = encodeToken({ v: 1, k, rv: opts.resourceVersion, after: keyOf(page[page.length - 1]) });
  return { items: page, continue: token, remainingItemCount: items.length - end };
}
