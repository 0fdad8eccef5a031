/**
 * Reads the credentials a request carries exactly as the kube-apiserver's authenticators read
 * them (k8s.io/apiserver/pkg/authentication/request/bearertoken and .../websocket):
 * - `Authorization`: trimmed, split on single spaces; scheme compared case-insensitively with
 *   "bearer"; the token is the second field (`Bearer tok extra` authenticates as `tok`);
 * - WebSocket requests: a `base64url.bearer.authorization.k8s.io.<base64url(token)>` subprotocol.
 * Whatever the proxy cannot read with certainty is `uncertain`: the apiserver may authenticate it
 * in a way the proxy cannot predict (another scheme, another authenticator, an error).
 */
import { Buffer } from "node:buffer";
import type { IncomingHttpHeaders } from "node:http";

export type Credential =
  | { kind: "none" }
  | { kind: "token"; token: string }
  | { kind: "uncertain"; reason: string };

/** The request parts credentials are read from (an IncomingMessage fits). */
export interface CredentialSource {
  headers: IncomingHttpHeaders;
  /** Names and values, alternating, as received: shows repeated headers. */
  rawHeaders: string[];
}

const NONE: Credential = { kind: "none" };
const PRINTABLE = /^[\x20-\x7e]*$/;
const KNOWN_SCHEMES = new Set(["basic", "digest", "negotiate", "ntlm", "token", "oauth", "hoba", "mutual"]);
const WS_PREFIX = "base64url.bearer.authorization.k8s.io.";
const BASE64URL_RAW = /^[A-Za-z0-9_-]*$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function count(raw: string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) n++;
  return n;
}

function uncertain(reason: string): Credential {
  return { kind: "uncertain", reason };
}

/**
 * One `Authorization` value as the bearer authenticator reads it. Anything but a non-empty bearer
 * token is uncertain: the apiserver would not take it as a token, and what it does instead (another
 * authenticator, anonymous, 401) is not ours to guess.
 */
export function bearerFromAuthorization(value: string): Credential {
  // Header values arrive as latin1: outside printable ASCII, Go's TrimSpace and ours could differ.
  if (!PRINTABLE.test(value.replaceAll("\t", " "))) {
    return uncertain("Authorization header with control or non-ASCII characters");
  }
  const auth = value.replace(/^[ \t]+|[ \t]+$/g, "");
  if (auth === "") return NONE;
  const parts = auth.split(" ");
  if (parts.length < 2 || parts[0].toLowerCase() !== "bearer") {
    // Name the scheme only when it is a well-known one: a lone field may be a secret.
    const scheme = parts.length > 1 && KNOWN_SCHEMES.has(parts[0].toLowerCase()) ? `"${parts[0]}" ` : "";
    return uncertain(`Authorization scheme ${scheme}is not Bearer`);
  }
  if (parts[1] === "") return uncertain("Authorization: Bearer with an empty token");
  return { kind: "token", token: parts[1] };
}

function isWebSocketRequest(headers: IncomingHttpHeaders): boolean {
  const upgrade = String(headers.upgrade ?? "");
  const connection = String(headers.connection ?? "");
  return upgrade.toLowerCase() === "websocket" && connection.toLowerCase().includes("upgrade");
}

/** The token of a WebSocket bearer subprotocol, as the websocket protocol authenticator reads it. */
export function websocketToken(headers: IncomingHttpHeaders): Credential {
  if (!isWebSocketRequest(headers)) return NONE;
  const header = headers["sec-websocket-protocol"];
  const values: string[] = header === undefined ? [] : Array.isArray(header) ? header : [String(header)];
  let token: string | undefined;
  let others = 0;
  for (const v of values) {
    for (const p of v.split(",").map((s) => s.trim())) {
      if (!p.startsWith(WS_PREFIX)) {
        others++;
        continue;
      }
      if (token !== undefined) return uncertain("several bearer tokens in Sec-WebSocket-Protocol");
      const encoded = p.slice(WS_PREFIX.length);
      if (!BASE64URL_RAW.test(encoded) || encoded.length % 4 === 1) {
        return uncertain("bearer subprotocol token is not base64url");
      }
      try {
        token = UTF8.decode(Buffer.from(encoded, "base64url"));
      } catch {
        return uncertain("bearer subprotocol token is not UTF-8");
      }
    }
  }
  if (token === undefined) return NONE;
  if (token === "") return uncertain("empty bearer subprotocol token");
  if (others === 0) return uncertain("bearer subprotocol without another subprotocol");
  return { kind: "token", token };
}

/** The caller's own credential (apart from a client certificate), read as the apiserver reads it. */
export function readCredential(req: CredentialSource): Credential {
  const authHeaders = count(req.rawHeaders, "authorization");
  if (authHeaders > 1) return uncertain("several Authorization headers");
  const fromHeader = authHeaders === 1
    ? bearerFromAuthorization(String(req.headers.authorization ?? ""))
    : NONE;
  const fromSocket = websocketToken(req.headers);
  if (fromHeader.kind === "uncertain") return fromHeader;
  if (fromSocket.kind === "uncertain") return fromSocket;
  if (fromHeader.kind === "token" && fromSocket.kind === "token") {
    // The apiserver tries the header first and the subprotocol if that fails: either may win.
    return fromHeader.token === fromSocket.token
      ? fromHeader
      : uncertain("bearer tokens in both Authorization and Sec-WebSocket-Protocol");
  }
  return fromHeader.kind === "token" ? fromHeader : fromSocket;
}
