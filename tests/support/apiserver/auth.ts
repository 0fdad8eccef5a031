/**
 * Authentication (client certificate, bearer token, anonymous) and a tiny authorizer shaped like
 * the RBAC defaults the tests rely on.
 */
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

/** Authenticates one request. */
export function authenticate(conn: ConnCert, authorization: string | undefined, tokens: Tokens): Identity {
  if (conn.state === "invalid") return { user: "", groups: [], authn: "invalid", certSerial: conn.serial };
  if (conn.state === "verified") {
    return {
      user: conn.cn!,
      groups: [...conn.groups!, "system:authenticated"],
      authn: "cert",
      certSerial: conn.serial,
    };
  }
  const m = authorization?.match(/^Bearer\s+(\S+)\s*$/i);
  if (m) {
    const t = tokens[m[1]];
    if (!t) return { user: "", groups: [], authn: "invalid" };
    return { user: t.user, groups: [...(t.groups ?? []), "system:authenticated"], authn: "token" };
  }
  return { user: "system:anonymous", groups: ["system:unauthenticated"], authn: "anonymous" };
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
