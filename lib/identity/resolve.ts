/**
 * Decides a request's identity the way the apiserver will authenticate the forwarded request: a
 * verified certificate whose CN and groups match a configured pair, else the caller's own bearer
 * token, else anonymous; credentials it cannot read with certainty make it `uncertain`. An
 * unverified certificate never lends its CN.
 */
import { createHash } from "node:crypto";
import type { Peer } from "../listener/https_listener.ts";
import type { Identity } from "./identity.ts";
import { type CredentialSource, readCredential } from "./credentials.ts";
import { encodeSegment } from "../store/segment.ts";

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/**
 * Impersonation changes what the upstream authorises, so it is part of the identity. Read from
 * the fields as received and forwarded (lib/proxy/headers.ts): each field one value, grouped by
 * name case-insensitively, in arrival order. `Impersonate-Group: a, b` (one group named "a, b")
 * and two fields `a` and `b` (two groups) are different identities.
 */
export function impersonationId(rawHeaders: readonly string[]): string {
  const fields = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (!name.startsWith("impersonate-")) continue;
    const values = fields.get(name);
    if (values) values.push(rawHeaders[i + 1]);
    else fields.set(name, [rawHeaders[i + 1]]);
  }
  if (fields.size === 0) return "";
  const canonical = JSON.stringify([...fields].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `~imp=${sha256(canonical).slice(0, 16)}`;
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
  const imp = impersonationId(req.rawHeaders);
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
