/**
 * Reading a kubeconfig: the current context, its cluster and user, and a surgical edit of the
 * cluster's `server` that leaves every other byte of the file as it was.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import YAML from "yaml";
import { ConfigError } from "../config/errors.ts";

/** The parts of the current context a redirect needs. Paths are absolute (resolved from the file). */
export interface CurrentContext {
  context: string;
  cluster: string;
  user: string;
  /** Index of the cluster in `clusters`, for editing. */
  clusterIndex: number;
  server: string;
  /** `certificate-authority` (absolute path) or "(embedded)" for -data, or null (system roots). */
  ca: string | null;
  credential: Credential;
}

/** How the current user authenticates to the apiserver. */
export type Credential =
  | { kind: "cert"; certFile?: string; keyFile?: string; certData?: string; keyData?: string }
  | { kind: "token" }
  | { kind: "exec" }
  | { kind: "none" };

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function named(list: unknown, name: string, field: string): { index: number; value: Obj } | null {
  if (!Array.isArray(list)) return null;
  const index = list.findIndex((e) => isObj(e) && e.name === name);
  if (index < 0) return null;
  const entry = list[index] as Obj;
  return { index, value: isObj(entry[field]) ? entry[field] as Obj : {} };
}

/** Parses kubeconfig text, throwing a one-line ConfigError when it is not valid YAML or not a mapping. */
export function parseKubeconfig(path: string, text: string): YAML.Document.Parsed {
  const doc = YAML.parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0].line;
    throw new ConfigError(
      `${path} is not valid YAML${line ? ` (line ${line})` : ""}: ${e.message.split("\n")[0]}`,
    );
  }
  if (!isObj(doc.toJS())) throw new ConfigError(`${path} is not a kubeconfig (expected a YAML mapping)`);
  return doc;
}

/** Resolves the current context of a parsed kubeconfig, or throws a ConfigError naming what is missing. */
export function currentContext(path: string, doc: YAML.Document.Parsed): CurrentContext {
  const cfg = doc.toJS() as Obj;
  const base = dirname(resolve(path));
  const abs = (p: unknown) =>
    typeof p === "string" && p !== "" ? (isAbsolute(p) ? p : resolve(base, p)) : undefined;

  const ctxName = cfg["current-context"];
  if (typeof ctxName !== "string" || ctxName === "") {
    throw new ConfigError(`${path} has no current-context`);
  }
  const ctx = named(cfg.contexts, ctxName, "context");
  if (!ctx) throw new ConfigError(`${path}: current context "${ctxName}" is not defined under contexts`);
  const clusterName = ctx.value.cluster;
  if (typeof clusterName !== "string" || clusterName === "") {
    throw new ConfigError(`${path}: context "${ctxName}" names no cluster`);
  }
  const cluster = named(cfg.clusters, clusterName, "cluster");
  if (!cluster) {
    throw new ConfigError(`${path}: cluster "${clusterName}" (of context "${ctxName}") is not defined`);
  }
  const server = cluster.value.server;
  if (typeof server !== "string" || server === "") {
    throw new ConfigError(`${path}: cluster "${clusterName}" has no server`);
  }
  const userName = typeof ctx.value.user === "string" ? ctx.value.user : "";
  let credential: Credential = { kind: "none" };
  if (userName !== "") {
    const user = named(cfg.users, userName, "user");
    if (!user) throw new ConfigError(`${path}: user "${userName}" (of context "${ctxName}") is not defined`);
    credential = credentialOf(user.value, abs);
  }
  const caFile = abs(cluster.value["certificate-authority"]);
  const ca = caFile ??
    (typeof cluster.value["certificate-authority-data"] === "string" ? "(embedded)" : null);
  return {
    context: ctxName,
    cluster: clusterName,
    user: userName,
    clusterIndex: cluster.index,
    server,
    ca,
    credential,
  };
}

function credentialOf(u: Obj, abs: (p: unknown) => string | undefined): Credential {
  const str = (k: string) => typeof u[k] === "string" && u[k] !== "" ? u[k] as string : undefined;
  const certFile = abs(u["client-certificate"]);
  const keyFile = abs(u["client-key"]);
  const certData = str("client-certificate-data");
  const keyData = str("client-key-data");
  if (certFile || certData || keyFile || keyData) {
    return { kind: "cert", certFile, keyFile, certData, keyData };
  }
  if (str("token") || str("tokenFile") || isObj(u["auth-provider"])) return { kind: "token" };
  if (isObj(u.exec)) return { kind: "exec" };
  return { kind: "none" };
}

const PLAIN_URL = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[A-Za-z0-9._~:/?\[\]@!$&()*+,;=%-]+$/;

/**
 * Returns `text` with the `server` of `clusters[index]` set to `server`, touching only that scalar.
 * In block style a trailing comment records the previous value; JSON/flow style gets no comment.
 */
export function setServer(
  text: string,
  doc: YAML.Document.Parsed,
  index: number,
  server: string,
  note: string,
) {
  const node = doc.getIn(["clusters", index, "cluster", "server"], true);
  if (!YAML.isScalar(node) || !node.range) {
    throw new ConfigError(`cluster #${index} server is not a plain string`);
  }
  const [start, valueEnd] = node.range;
  let value: string;
  if (node.type === "QUOTE_SINGLE") value = `'${server.replaceAll("'", "''")}'`;
  else if (node.type === "PLAIN" && PLAIN_URL.test(server)) value = server;
  else value = JSON.stringify(server);
  const eol = text.indexOf("\n", valueEnd);
  const lineEnd = eol < 0 ? text.length : eol;
  const rest = text.slice(valueEnd, lineEnd);
  // Only a block-style line that ends here (or with a comment) may carry our comment; in flow/JSON
  // style a "#" would comment out the rest of the line.
  if (/^\s*(#.*)?$/.test(rest) && note !== "") {
    return text.slice(0, start) + value + ` # ${note}` + text.slice(lineEnd);
  }
  return text.slice(0, start) + value + text.slice(valueEnd);
}
