/**
 * Authentication (client certificate, bearer token, anonymous) and a tiny authorizer shaped like
 * the RBAC defaults the tests rely on.
 */
import { Buffer } from "node:buffer";
import type { TLSSocket } from "node:tls";
import type { AuthzAttributes } from "./status.ts";

/** Who is calling. */
export interface Identity {
  user: string;
  groups: string[];
  authn: "cert" | "token" | "anonymous" | "invalid";
  certSerial?: string;
}

/** What one TLS connection proved about its client certificate (read once per connection). */
export interface ConnCert {
  state: "none" | "verified" | "invalid";
  cn?: string;
  groups?: string[];
  serial?: string;
}

/** Reads the peer certificate of a new TLS connection. */
export function readConnCert(sock: TLSSocket): ConnCert {
  const cert = sock.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { state: "none" };
  const serial = String(cert.serialNumber ?? "").toUpperCase().replace(/^0+(?=.)/, "");
  if (!sock.authorized) return { state: "invalid", serial };
  const o = cert.subject?.O;
  const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
  return { state: "verified", cn: String(cert.subject?.CN ?? ""), groups, serial };
}

/** Token table: bearer token → user and groups. */
export type Tokens = Record<string, { user: string; groups?: string[] }>;

/** The headers authentication reads (an IncomingMessage's `headers` fits). */
export type AuthHeaders = Record<string, string | string[] | undefined>;

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Go's strings.TrimSpace for the ASCII whitespace a header value can hold. */
function trimSpace(s: string): string {
  return s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
}

/**
 * The bearer token authenticator (k8s.io/apiserver/.../request/bearertoken): the first
 * Authorization value, trimmed, split on single spaces; "bearer" any case; token = second field.
 * undefined = no credential (another scheme, an empty token: the next authenticator decides).
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  const auth = trimSpace(authorization ?? "");
  if (auth === "") return undefined;
  const parts = auth.split(" ");
  if (parts.length < 2 || parts[0].toLowerCase() !== "bearer") return undefined;
  return parts[1] === "" ? undefined : parts[1];
}

const WS_PREFIX = "base64url.bearer.authorization.k8s.io.";

/**
 * The WebSocket protocol authenticator (.../request/websocket): on a WebSocket upgrade, one
 * `base64url.bearer.authorization.k8s.io.<token>` subprotocol beside at least one other.
 * undefined = no credential; "error" = the authenticator fails the request.
 */
export function websocketToken(headers: AuthHeaders): string | undefined | "error" {
  const upgrade = String(first(headers.upgrade) ?? "").toLowerCase();
  const connection = String(first(headers.connection) ?? "").toLowerCase();
  if (upgrade !== "websocket" || !connection.includes("upgrade")) return undefined;
  const raw = headers["sec-websocket-protocol"];
  const values = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  let token = "";
  let seen = false;
  let others = 0;
  for (const v of values) {
    for (const p of v.split(",").map((x) => trimSpace(x))) {
      if (!p.startsWith(WS_PREFIX)) {
        others++;
        continue;
      }
      if (seen) return "error";
      seen = true;
      const enc = p.slice(WS_PREFIX.length);
      if (!/^[A-Za-z0-9_-]*$/.test(enc) || enc.length % 4 === 1) return "error";
      try {
        token = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
          Buffer.from(enc, "base64url"),
        );
      } catch {
        return "error";
      }
    }
  }
  if (token !== "" && others === 0) return "error";
  return token === "" ? undefined : token;
}

/**
 * Authenticates one request as the kube-apiserver's authenticator union does: client certificate,
 * then bearer header, then WebSocket subprotocol; a failing authenticator (an unverifiable cert, an
 * unknown token) makes it 401; no credential at all is anonymous.
 */
export function authenticate(conn: ConnCert, headers: AuthHeaders, tokens: Tokens): Identity {
  if (conn.state === "verified") {
    return {
      user: conn.cn!,
      groups: [...conn.groups!, "system:authenticated"],
      authn: "cert",
      certSerial: conn.serial,
    };
  }
  let failed = conn.state === "invalid";
  for (const token of [bearerToken(first(headers.authorization)), websocketToken(headers)]) {
    if (token === undefined) continue;
    const t = token === "error" ? undefined : tokens[token];
    if (!t) {
      failed = true;
      continue;
    }
    return { user: t.user, groups: [...(t.groups ?? []), "system:authenticated"], authn: "token" };
  }
  if (failed) return { user: "", groups: [], authn: "invalid", certSerial: conn.serial };
  return { user: "system:anonymous", groups: ["system:unauthenticated"], authn: "anonymous" };
}

/** What a request asks to impersonate, read as the kube-apiserver's impersonation filter reads it. */
export interface Impersonation {
  /** The first `Impersonate-User` field (Go's Header.Get). */
  user?: string;
  uid?: string;
  /** Every `Impersonate-Group` field, each one group (a comma is part of the name). */
  groups: string[];
  /** `Impersonate-Extra-<key>` fields by lower-cased key, each field one value. */
  extra: Record<string, string[]>;
}

/**
 * k8s.io/apiserver/pkg/endpoints/filters/impersonation.go buildImpersonationRequests, from the
 * fields as received (names compared case-insensitively, as Go canonicalises them): undefined when
 * nothing is impersonated.
 */
export function readImpersonation(rawHeaders: readonly string[]): Impersonation | undefined {
  const imp: Impersonation = { groups: [], extra: {} };
  let any = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    if (!name.startsWith("impersonate-")) continue;
    any = true;
    if (name === "impersonate-user") imp.user ??= value;
    else if (name === "impersonate-uid") imp.uid ??= value;
    else if (name === "impersonate-group") imp.groups.push(value);
    else if (name.startsWith("impersonate-extra-")) {
      const key = decodeURIComponent(name.slice("impersonate-extra-".length));
      (imp.extra[key] ??= []).push(value);
    }
  }
  return any ? imp : undefined;
}

/**
 * The identity a request acts as: the impersonated one when its authenticated identity may
 * impersonate (admin, system:masters here); "forbidden" when it may not, or when groups or extra
 * are asked for without a user (the apiserver answers 403 / 400 there).
 */
export function impersonate(id: Identity, imp: Impersonation | undefined): Identity | "forbidden" {
  if (!imp) return id;
  if (!imp.user || !(id.user === "admin" || id.groups.includes("system:masters"))) return "forbidden";
  const groups = [...imp.groups];
  if (!groups.includes("system:authenticated")) groups.push("system:authenticated");
  return { user: imp.user, groups, authn: id.authn };
}

const READ = ["get", "list", "watch"];
const PUBLIC_PATHS = ["/version", "/healthz", "/livez", "/readyz"];
const NODE_WRITES: Record<string, string[]> = {
  "nodes": ["create", "update", "patch"],
  "nodes/status": ["update", "patch"],
  "pods/status": ["update", "patch"],
  "leases": ["create", "update", "patch"],
  "events": ["create", "update", "patch"],
  "serviceaccounts/token": ["create"],
};

/** Decides whether an identity may do what the attributes describe; `rbac` consults stored RBAC objects. */
export function authorize(
  id: Identity,
  a: AuthzAttributes,
  rbac?: (id: Identity, a: AuthzAttributes) => boolean,
): boolean {
  if (id.user === "admin" || id.groups.includes("system:masters")) return true;
  if (!a.resourceRequest) {
    const path = a.path.replace(/\/+$/, "") || "/";
    if (PUBLIC_PATHS.some((p) => path === p || path.startsWith(p + "/"))) return true;
    return id.authn !== "anonymous" && a.verb === "get";
  }
  if (id.authn === "anonymous") return false;
  if (rbac?.(id, a)) return true;
  // ServiceAccounts get only what RBAC objects grant them (as in a real cluster).
  if (id.user.startsWith("system:serviceaccount:")) return false;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  if (id.groups.includes("system:nodes")) {
    if (READ.includes(a.verb)) return true;
    return NODE_WRITES[res]?.includes(a.verb) ?? false;
  }
  return READ.includes(a.verb) && a.resource !== "secrets";
}
