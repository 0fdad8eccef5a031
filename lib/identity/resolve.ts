/**
 * Decides a request's identity the way the apiserver will authenticate the forwarded request: a
 * verified certificate whose CN and groups match a configured pair, else the caller's own bearer
 * token, else anonymous; credentials it cannot read with certainty make it `uncertain`. An
 * unverified certificate never lends its CN.
 */
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { Peer } from "../listener/https_listener.ts";
import type { Identity } from "./identity.ts";
import { type CredentialSource, readCredential } from "./credentials.ts";
import { encodeSegment } from "../store/segment.ts";

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

/** Token → hash, so a hot token is hashed once (bounded: cleared when large). */
export class TokenHashes {
  #ids = new Map<string, string>();
  hash(token: string): string {
    let h = this.#ids.get(token);
    if (!h) {
      h = sha256(token).slice(0, 32);
      if (this.#ids.size > 10_000) this.#ids.clear();
      this.#ids.set(token, h);
    }
    return h;
  }
}

const defaultHashes = new TokenHashes();

/**
 * @param hasPair whether a configured pair asserts exactly this CN and set of groups.
 */
export function resolveIdentity(
  peer: Peer,
  req: CredentialSource,
  hasPair: (cn: string, groups: string[]) => boolean,
  hashes: TokenHashes = defaultHashes,
): Identity {
  const imp = impersonation(req.headers);
  // The apiserver tries the client certificate before any token: a matching pair decides.
  if (peer.verified && peer.cn && hasPair(peer.cn, peer.groups)) {
    return { kind: "cert", cn: peer.cn, groups: peer.groups, cacheId: `cn~${encodeSegment(peer.cn)}${imp}` };
  }
  const cred = readCredential(req);
  if (cred.kind === "uncertain") return { kind: "uncertain", reason: cred.reason, cacheId: "" };
  if (cred.kind === "token") {
    const h = hashes.hash(cred.token);
    return { kind: "token", tokenHash: h, cacheId: `token~${h}${imp}` };
  }
  return { kind: "anonymous", cacheId: `anonymous${imp}` };
}

/** How an identity is named in logs: never the token itself. */
export function describeIdentity(id: Identity): string {
  switch (id.kind) {
    case "cert":
      return `cert:${id.cn}`;
    case "token":
      return `token:${id.tokenHash.slice(0, 8)}`;
    case "uncertain":
      return "uncertain";
    default:
      return "anonymous";
  }
}
