/**
 * Where the kube-apiserver is and how to authenticate to it: a kubeconfig (client certificate or
 * token), or in-cluster like client-go's rest.InClusterConfig (KUBERNETES_SERVICE_HOST/PORT, the
 * mounted ServiceAccount token and CA).
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError } from "../config/errors.ts";
import { readText } from "../files/read_text.ts";
import { decodeBase64 } from "../kubeconfig/base64.ts";
import { currentContext, parseKubeconfig } from "../kubeconfig/kubeconfig.ts";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** Bound ServiceAccount tokens rotate: re-read the file this often (client-go waits a minute too). */
const TOKEN_REREAD_MS = 60_000;

/** A resolved connection to the kube-apiserver. */
export interface ClusterConfig {
  /** https://host:port, no trailing slash. */
  server: string;
  /** Where the settings came from, for messages ("in-cluster", or the kubeconfig path). */
  source: string;
  caPem?: string;
  certPem?: string;
  keyPem?: string;
  /** The current bearer token, if the identity is a token. */
  token?: () => Promise<string>;
}

type Obj = Record<string, unknown>;

function decodePem(b64: string, what: string): string {
  try {
    return new TextDecoder().decode(decodeBase64(b64.trim()));
  } catch {
    throw new ConfigError(`${what} is not valid base64`);
  }
}

/** A token read from a file, re-read every minute. */
function fileToken(path: string, first: string): () => Promise<string> {
  let token = first.trim();
  let readAt = Date.now();
  return async () => {
    if (Date.now() - readAt > TOKEN_REREAD_MS) {
      readAt = Date.now();
      try {
        token = (await Deno.readTextFile(path)).trim();
      } catch { /* keep the last token: the file is rewritten atomically, a failed read is transient */ }
    }
    return token;
  };
}

/** Reads the current context of a kubeconfig. Exec and auth-provider plugins are not supported. */
export async function fromKubeconfig(path: string): Promise<ClusterConfig> {
  const text = await readText(path, "kubeconfig");
  const doc = parseKubeconfig(path, text);
  const ctx = currentContext(path, doc);
  const cfg = doc.toJS() as Obj;
  const find = (list: string, name: string, field: string): Obj => {
    const arr = Array.isArray(cfg[list]) ? cfg[list] as Obj[] : [];
    return (arr.find((e) => e?.name === name)?.[field] ?? {}) as Obj;
  };
  const cluster = find("clusters", ctx.cluster, "cluster");
  const user = find("users", ctx.user, "user");
  const base = dirname(resolve(path));
  const abs = (p: string) => isAbsolute(p) ? p : resolve(base, p);
  if (!ctx.server.startsWith("https://")) {
    throw new ConfigError(`${path}: server ${ctx.server} is not https://`);
  }
  if (cluster["insecure-skip-tls-verify"] === true) {
    throw new ConfigError(`${path}: insecure-skip-tls-verify is not supported; give the cluster CA`);
  }
  const out: ClusterConfig = { server: ctx.server.replace(/\/+$/, ""), source: path };
  if (typeof cluster["certificate-authority-data"] === "string") {
    out.caPem = decodePem(cluster["certificate-authority-data"], `${path}: certificate-authority-data`);
  } else if (typeof cluster["certificate-authority"] === "string") {
    out.caPem = await readText(abs(cluster["certificate-authority"]), "certificate-authority");
  }
  const c = ctx.credential;
  if (c.kind === "cert") {
    out.certPem = c.certData
      ? decodePem(c.certData, `${path}: client-certificate-data`)
      : c.certFile
      ? await readText(c.certFile, "client-certificate")
      : undefined;
    out.keyPem = c.keyData
      ? decodePem(c.keyData, `${path}: client-key-data`)
      : c.keyFile
      ? await readText(c.keyFile, "client-key")
      : undefined;
    if (!out.certPem || !out.keyPem) {
      throw new ConfigError(`${path}: user "${ctx.user}" needs both a client certificate and a key`);
    }
  } else if (typeof user.token === "string" && user.token !== "") {
    const token = user.token;
    out.token = () => Promise.resolve(token);
  } else if (typeof user.tokenFile === "string" && user.tokenFile !== "") {
    const file = abs(user.tokenFile);
    out.token = fileToken(file, await readText(file, "tokenFile"));
  } else if (c.kind === "exec" || c.kind === "token") {
    throw new ConfigError(
      `${path}: user "${ctx.user}" uses an exec or auth-provider plugin, which is not supported ` +
        "(use a client certificate or a token)",
    );
  }
  return out;
}

/** In-cluster configuration, as a pod with a ServiceAccount sees it. */
export async function inCluster(
  env: { get(name: string): string | undefined } = Deno.env,
  dir = SERVICE_ACCOUNT_DIR,
): Promise<ClusterConfig> {
  const host = env.get("KUBERNETES_SERVICE_HOST");
  const port = env.get("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw new ConfigError(
      "no --kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST and " +
        "KUBERNETES_SERVICE_PORT are not set)",
    );
  }
  const tokenFile = `${dir}/token`;
  const token = await readText(tokenFile, "ServiceAccount token");
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    source: "in-cluster",
    caPem: await readText(`${dir}/ca.crt`, "ServiceAccount CA"),
    token: fileToken(tokenFile, token),
  };
}
