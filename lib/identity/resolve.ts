/**
 * Decides a request's identity: a verified certificate whose CN has a configured pair, else the
 * caller's own bearer token, else anonymous. An unverified certificate never lends its CN.
 */
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { Peer } from "../listener/https_listener.ts";
import type { Identity } from "./identity.ts";

const SAFE = /[^A-Za-z0-9._:@+=,-]/g;

/** Keeps readable characters and percent-encodes the rest, so the id is a valid cache-key segment. */
function safe(s: string): string {
  const enc = s.replace(
    SAFE,
    (c) =>
      [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(
        "",
      ),
  );
  return enc.length <= 160 ? enc : `${enc.slice(0, 120)}~h=${sha256(s).slice(0, 32)}`;
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/** Impersonation changes what the upstream authorises, so it is part of the identity. */
function impersonation(headers: IncomingHttpHeaders): string {
  let parts = "";
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith("impersonate-")) parts += `${k}=${Array.isArray(v) ? v.join(",") : v};`;
  }
  return parts ? `~imp=${sha256(parts).slice(0, 16)}` : "";
}

const tokenIds = new Map<string, string>();

function tokenHash(token: string): string {
  let h = tokenIds.get(token);
  if (!h) {
    h = sha256(token).slice(0, 32);
    if (tokenIds.size > 10_000) tokenIds.clear();
    tokenIds.set(token, h);
  }
  return h;
}

export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (!auth) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  return m ? m[1] : undefined;
}

export function resolveIdentity(
  peer: Peer,
  headers: IncomingHttpHeaders,
  hasPair: (cn: string) => boolean,
): Identity {
  const imp = impersonation(headers);
  if (peer.verified && peer.cn && hasPair(peer.cn)) {
    return { kind: "cert", cn: peer.cn, groups: peer.groups, cacheId: `cn~${safe(peer.cn)}${imp}` };
  }
  const token = bearerToken(headers);
  if (token) {
    const h = tokenHash(token);
    return { kind: "token", tokenHash: h, cacheId: `token~${h}${imp}` };
  }
  return { kind: "anonymous", cacheId: `anonymous${imp}` };
}

/** How an identity is named in logs and status output: never the token itself. */
export function describeIdentity(id: Identity): string {
  switch (id.kind) {
    case "cert":
      return `cert:${id.cn}`;
    case "token":
      return `token:${id.tokenHash.slice(0, 8)}`;
    default:
      return "anonymous";
  }
}
