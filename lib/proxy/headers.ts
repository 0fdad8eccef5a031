/** Header handling between the client and the upstream (RFC 9110 hop-by-hop rules). */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

function connectionTokens(headers: IncomingHttpHeaders): string[] {
  const c = headers.connection;
  if (!c) return [];
  return String(c).toLowerCase().split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * The end-to-end headers of a message: hop-by-hop ones and those named in Connection dropped.
 * With `rawHeaders` (the fields as received), a field sent more than once goes on as a list of
 * fields, never joined: the kube-apiserver reads each `Impersonate-Group` field as one group, and
 * only the first `Impersonate-User` or `Accept` field (Go's Header keeps them apart). Names are
 * grouped case-insensitively, values kept in arrival order. Content-Length (duplicates are equal,
 * the parser checked) stays one field.
 */
export function endToEnd(headers: IncomingHttpHeaders, rawHeaders?: readonly string[]): OutgoingHttpHeaders {
  const named = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  if (rawHeaders) {
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const k = rawHeaders[i].toLowerCase();
      if (HOP_BY_HOP.has(k) || named.includes(k)) continue;
      const v = rawHeaders[i + 1];
      const prev = out[k];
      if (prev === undefined || k === "content-length") out[k] = prev ?? v;
      else if (Array.isArray(prev)) prev.push(v);
      else out[k] = [prev as string, v];
    }
    return out;
  }
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * Headers that say who the request is (the credential, impersonation). Stripping one because
 * Connection names it would send the cloud someone else than the identity the proxy resolved,
 * and caches under; such a request is refused instead (see `identityNamedInConnection`).
 */
function isIdentityHeader(name: string): boolean {
  return name === "authorization" || name.startsWith("impersonate-") || name === "sec-websocket-protocol";
}

/**
 * The first identity header a request's Connection field names, if any. Go's ReverseProxy would
 * remove it as hop-by-hop; lite-apiserver answers 400 instead, so the identity it resolves and
 * caches under is always the one the cloud authenticates.
 */
export function identityNamedInConnection(headers: IncomingHttpHeaders): string | undefined {
  return connectionTokens(headers).find(isIdentityHeader);
}

/**
 * Drops protobuf from an Accept list when JSON is also acceptable, so the cache can read the
 * answer. Each field is rewritten on its own (repeated fields stay repeated).
 */
export function preferJson<T extends string | string[] | undefined>(accept: T): T {
  if (!accept) return accept;
  if (Array.isArray(accept)) return accept.map((a) => preferJson(a)) as T;
  const parts = (accept as string).split(",").map((s) => s.trim()).filter(Boolean);
  const kept = parts.filter((p) => !/^application\/vnd\.kubernetes\.protobuf/i.test(p));
  if (kept.length === parts.length || kept.length === 0) return accept;
  return kept.join(",") as T;
}
