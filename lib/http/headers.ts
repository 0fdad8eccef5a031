/**
 * Header fields as Node's `IncomingHttpHeaders` exposes them: names lower-cased, duplicates
 * joined by Node's rules, `set-cookie` always an array. The raw order is kept in `rawHeaders`.
 */
import type { IncomingHttpHeaders } from "node:http";

/** A lower-cased header map (null prototype: a `__proto__` header is just a header). */
export type HeaderMap = IncomingHttpHeaders;

/** Headers whose duplicates Node drops (the first one wins). */
const SINGLE = new Set([
  "age",
  "authorization",
  "content-length",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

/** An empty header map. */
export function newHeaderMap(): HeaderMap {
  return Object.create(null) as HeaderMap;
}

/** Adds one field to `map` by Node's rules (`name` already lower-cased). */
export function addHeader(map: HeaderMap, name: string, value: string): void {
  const prev = map[name];
  if (prev === undefined) {
    map[name] = name === "set-cookie" ? [value] : value;
  } else if (name === "set-cookie") {
    (prev as string[]).push(value);
  } else if (SINGLE.has(name)) {
    return;
  } else {
    map[name] = prev + (name === "cookie" ? "; " : ", ") + value;
  }
}

/** The comma-separated elements of a header value, trimmed and lower-cased, empty ones dropped. */
export function tokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const v = Array.isArray(value) ? value.join(",") : value;
  const out: string[] = [];
  for (const part of v.split(",")) {
    const t = part.trim().toLowerCase();
    if (t) out.push(t);
  }
  return out;
}
