/**
 * The one home of cache-key segment encoding: the store's segment contract (see store.ts) and the
 * percent-encoding every layer uses to turn arbitrary text (names, selectors, certificate CNs) into
 * segments and file names.
 */
import { createHash } from "node:crypto";

/** A valid key segment: non-empty, at most 200 bytes of [A-Za-z0-9._:~%@+=,-], never "." or "..". */
const SEGMENT = /^[A-Za-z0-9._:~%@+=,-]{1,200}$/;

/** The longest segment allowed by the store contract. */
export const MAX_SEGMENT = 200;
const HASH_CHARS = 32;
const HASH_MARK = "~h=";
const KEEP = /^[A-Za-z0-9._:-]$/;
/** A string encodePart leaves as it is: only KEEP characters, no leading `_`. */
const PLAIN = /^(?:[A-Za-z0-9.:-][A-Za-z0-9._:-]*)?$/;

/** True when `s` is a valid key segment (the contract of store.ts). */
export function isSegment(s: string): boolean {
  return SEGMENT.test(s) && s !== "." && s !== "..";
}

/** `%XX` (uppercase hex) for each UTF-8 byte of `ch`. */
function escapeChar(ch: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(ch)) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  return out;
}

/**
 * Percent-encodes every character `keep` refuses (all its UTF-8 bytes as %XX, uppercase); stops
 * early once the output is longer than `stopAfter` (the caller then replaces it by a hash).
 */
export function percentEncode(
  s: string,
  keep: (ch: string, out: string) => boolean,
  stopAfter = Infinity,
): string {
  let out = "";
  for (const ch of s) {
    out += keep(ch, out) ? ch : escapeChar(ch);
    if (out.length > stopAfter) break;
  }
  return out;
}

/**
 * Percent-encodes every UTF-8 byte outside [A-Za-z0-9._:-] as %XX (uppercase); no length cap.
 * A leading `_` is encoded too, so no name can spell a marker such as `_list` or `_cluster`.
 */
export function encodePart(s: string): string {
  // Most parts (resource names, versions, namespaces) need no escape: returned as they are.
  if (PLAIN.test(s)) return s;
  return percentEncode(s, (ch, out) => KEEP.test(ch) && !(out === "" && ch === "_"));
}

/**
 * Makes an assembled (ASCII, safe) segment fit the contract: never empty, "." or "..", at most 200
 * bytes (longer ones become a prefix + `~h=` + the first 32 hex digits of the sha256 of the whole).
 */
export function finishSegment(s: string): string {
  if (s === "") return "_";
  if (s === "." || s === "..") return s.replaceAll(".", "%2E");
  if (s.length <= MAX_SEGMENT) return s;
  const hash = createHash("sha256").update(s).digest("hex").slice(0, HASH_CHARS);
  let prefix = s.slice(0, MAX_SEGMENT - HASH_MARK.length - HASH_CHARS);
  // Do not cut a %XX escape in half: keeps the prefix readable.
  const pct = prefix.lastIndexOf("%");
  if (pct >= 0 && pct > prefix.length - 3) prefix = prefix.slice(0, pct);
  return prefix + HASH_MARK + hash;
}

/**
 * A filesystem-safe key segment for an arbitrary string: characters outside [A-Za-z0-9._:-] (and a
 * leading `_`) become %XX, "" becomes `_`, "." and ".." are escaped, and anything over 200 bytes is
 * capped with a hash.
 */
export function encodeSegment(s: string): string {
  return finishSegment(encodePart(s));
}
