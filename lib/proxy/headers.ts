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

/** The end-to-end headers of a message: hop-by-hop ones and those named in Connection dropped. */
export function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Drops protobuf from an Accept list when JSON is also acceptable, so the cache can read the answer. */
export function preferJson(accept: string | undefined): string | undefined {
  if (!accept) return accept;
  const parts = accept.split(",").map((s) => s.trim()).filter(Boolean);
  const kept = parts.filter((p) => !/^application\/vnd\.kubernetes\.protobuf/i.test(p));
  if (kept.length === parts.length || kept.length === 0) return accept;
  return kept.join(",");
}
