/**
 * `kubeconfig redirect` / `restore`: point a component's kubeconfig at lite-apiserver and back.
 *
 * A redirect is first planned (pure: every file's before/after), then either shown as a diff
 * (`--dry-run`) or applied. Applying writes the identity files and the tls-config first, the
 * backup next, and the kubeconfig last, each atomically.
 */
import { basename, dirname, resolve } from "node:path";
import { decodeBase64 } from "./base64.ts";
import { type CurrentContext, currentContext, parseKubeconfig, setServer } from "./kubeconfig.ts";
import { ConfigError, errMessage } from "../config/errors.ts";
import { ensureDir, modeOf, readIfExists, replaceFile } from "./files.ts";
import { registerPair, type TlsPair } from "./tlsconfig.ts";
import { certCommonName, parseTlsConfig } from "../certs/mod.ts";
import { readText } from "../files/read_text.ts";
import { unifiedDiff } from "./diff.ts";

/** Where lite-apiserver listens by default. */
export const DEFAULT_SERVER = "https://127.0.0.1:51003";
/** The tls-config file the installed service reads. */
export const DEFAULT_TLS_CONFIG = "/etc/lite-apiserver/tls-config.json";
/** Suffix of the one-time backup written next to the kubeconfig. */
export const BACKUP_SUFFIX = ".lite-apiserver.orig";

/** Options of a redirect. */
export interface RedirectOptions {
  kubeconfig: string;
  server?: string;
  tlsConfigFile?: string;
}

/** One file the redirect writes. `secret` files are never shown in a diff. */
export interface FileChange {
  path: string;
  before: string | null;
  after: string;
  mode: number;
  secret: boolean;
  what: string;
}

/** What a redirect would do. `changes` is empty when the kubeconfig is already redirected. */
export interface RedirectPlan {
  kubeconfig: string;
  backupPath: string;
  /** Bytes to back up, or null when a backup already exists. */
  backup: Uint8Array | null;
  context: string;
  cluster: string;
  user: string;
  server: string;
  /** The upstream kube-apiserver URL, or null when unknown (already redirected, no backup). */
  originalServer: string | null;
  ca: string | null;
  changes: FileChange[];
  notes: string[];
}

const dec = new TextDecoder();

/** Works out what redirecting `opts.kubeconfig` changes, without writing anything. */
export async function planRedirect(opts: RedirectOptions): Promise<RedirectPlan> {
  const server = opts.server ?? DEFAULT_SERVER;
  // Absolute: the paths written into the tls-config must not depend on the current directory.
  const tlsConfig = resolve(opts.tlsConfigFile ?? DEFAULT_TLS_CONFIG);
  if (!/^https:\/\/[^/]+/.test(server)) {
    throw new ConfigError(`--server must be an https:// URL, got "${server}"`);
  }
  const path = opts.kubeconfig;
  const raw = await readIfExists(path);
  if (raw === null) throw new ConfigError(`kubeconfig ${path} does not exist`);
  const text = dec.decode(raw);
  const doc = parseKubeconfig(path, text);
  const cur = currentContext(path, doc);
  const backupPath = path + BACKUP_SUFFIX;
  const backupBytes = await readIfExists(backupPath);
  const notes: string[] = [];
  const changes: FileChange[] = [];

  // The original upstream: from the backup when there is one (the file may already be redirected).
  let originalServer: string | null = cur.server === server ? null : cur.server;
  if (backupBytes !== null) {
    try {
      const orig = currentContext(backupPath, parseKubeconfig(backupPath, dec.decode(backupBytes)));
      if (orig.server !== server) originalServer = orig.server;
    } catch (err) {
      notes.push(
        `backup ${backupPath} is unreadable (${errMessage(err)}): upstream taken from the kubeconfig`,
      );
    }
  }
  if (originalServer === null) {
    notes.push(`${path} already points at ${server} and has no backup: the upstream URL is unknown`);
  }

  if (cur.server !== server) {
    const mode = (await modeOf(path)) ?? 0o600;
    const note = originalServer ? `lite-apiserver: was ${originalServer}` : "";
    const after = setServer(text, doc, cur.clusterIndex, server, note);
    // Safety net: the edit must change exactly the one value it means to.
    const check = currentContext(path, parseKubeconfig(path, after));
    if (check.server !== server) throw new ConfigError(`could not rewrite the server of ${path} safely`);
    changes.push({
      path,
      before: text,
      after,
      mode,
      secret: false,
      what: `server ${cur.server} -> ${server}`,
    });
  }

  await planIdentity(cur, tlsConfig, changes, notes);
  if (cur.ca === null) {
    notes.push(
      `cluster "${cur.cluster}" names no certificate-authority: lite-apiserver's serving cert must chain to a system root`,
    );
  }
  return {
    kubeconfig: path,
    backupPath,
    // Back up only the original: never a file that already points at lite-apiserver.
    backup: backupBytes === null && changes.some((c) => c.path === path) ? raw : null,
    context: cur.context,
    cluster: cur.cluster,
    user: cur.user,
    server,
    originalServer,
    ca: cur.ca,
    changes,
    notes,
  };
}

/** Adds the identity file and tls-config changes so lite-apiserver can present the user's cert upstream. */
async function planIdentity(
  cur: CurrentContext,
  tlsConfig: string,
  changes: FileChange[],
  notes: string[],
): Promise<void> {
  const cred = cur.credential;
  if (cred.kind === "token") {
    notes.push(
      `user "${cur.user}" authenticates with a token: it passes through lite-apiserver, nothing to register`,
    );
    return;
  }
  if (cred.kind === "exec") {
    notes.push(
      `user "${cur.user}" uses an exec credential plugin: its tokens pass through; client certs it may return are not registered`,
    );
    return;
  }
  if (cred.kind === "none") {
    notes.push(`user "${cur.user || "(none)"}" has no credentials: requests go upstream anonymously`);
    return;
  }
  let pair: TlsPair;
  let certPemForCn: string;
  if (cred.certData === undefined && cred.keyData === undefined) {
    if (!cred.certFile || !cred.keyFile) {
      throw new ConfigError(
        `user "${cur.user}" has a client certificate without a key (or a key without a certificate)`,
      );
    }
    // lite-apiserver refuses to start on a pair it cannot load: check both files now.
    certPemForCn = await credentialFile(cred.certFile, "client certificate");
    await credentialFile(cred.keyFile, "client key");
    pair = { cert: cred.certFile, key: cred.keyFile };
  } else {
    // Embedded credentials: write cert + key to one 0600 PEM file lite-apiserver can load.
    const certPem = cred.certData !== undefined
      ? decodePem(cred.certData, "client-certificate-data", cur.user)
      : await credentialFile(cred.certFile, "client certificate");
    const keyPem = cred.keyData !== undefined
      ? decodePem(cred.keyData, "client-key-data", cur.user)
      : await credentialFile(cred.keyFile, "client key");
    certPemForCn = certPem;
    const file = `${dirname(tlsConfig)}/identities/${safeName(cur.context)}.pem`;
    const combined = withNewline(certPem) + withNewline(keyPem);
    const existing = await readIfExists(file);
    const before = existing === null ? null : dec.decode(existing);
    if (before !== combined) {
      changes.push({
        path: file,
        before,
        after: combined,
        mode: 0o600,
        secret: true,
        what: `client certificate and key of user "${cur.user}" (embedded in the kubeconfig)`,
      });
    }
    pair = { cert: file, key: file };
  }
  const cn = certCommonName(certPemForCn);
  if (cn === null) {
    throw new ConfigError(`user "${cur.user}": the client certificate is not a PEM certificate with a CN`);
  }
  const tlsBytes = await readIfExists(tlsConfig);
  const tlsText = tlsBytes === null ? null : dec.decode(tlsBytes);
  const registered = tlsText === null ? [] : parseTlsConfig(tlsText, tlsConfig);
  // lite-apiserver refuses two pairs with one CN: a new pair for a CN replaces the old one.
  const cns = new Map<TlsPair, string | null>();
  for (const p of registered) {
    const bytes = await readIfExists(p.cert).catch(() => null);
    cns.set(p, bytes === null ? null : certCommonName(dec.decode(bytes)));
  }
  const reg = registerPair(registered, pair, (p) => cns.get(p) === cn);
  if (reg.text !== null) {
    const replaced = reg.replaced.map((p) => `; replaces ${p.cert}`).join("");
    changes.push({
      path: tlsConfig,
      before: tlsText,
      after: reg.text,
      mode: (await modeOf(tlsConfig)) ?? 0o600,
      secret: false,
      what: `registered client identity CN "${cn}" (cert ${pair.cert}, key ${pair.key})${replaced}`,
    });
  }
}

/** A credential file the kubeconfig names; lite-apiserver refuses to start on one it cannot read. */
async function credentialFile(path: string | undefined, what: string): Promise<string> {
  if (!path) throw new ConfigError(`${what} is missing`);
  return await readText(path, `${what} file (named by the kubeconfig)`);
}

function decodePem(b64: string, field: string, user: string): string {
  let text: string;
  try {
    text = dec.decode(decodeBase64(b64.replace(/\s+/g, "")));
  } catch {
    throw new ConfigError(`user "${user}": ${field} is not valid base64`);
  }
  if (!text.includes("-----BEGIN ")) {
    throw new ConfigError(`user "${user}": ${field} does not hold a PEM block`);
  }
  return text;
}

function withNewline(s: string): string {
  return s.endsWith("\n") ? s : s + "\n";
}

/** A context name made safe as a file name (context names often hold ":" and "@"). */
export function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._@:-]/g, "_").replace(/^\.+/, "_") || "default";
}

/** Renders a plan as a unified diff (secret files summarised, never shown). */
export function planDiff(plan: RedirectPlan): string {
  const parts: string[] = [];
  if (plan.backup !== null) {
    parts.push(`# would back up ${plan.kubeconfig} to ${plan.backupPath} (0600)`);
  }
  for (const c of plan.changes) {
    if (c.secret) {
      parts.push(`# would write ${c.path} (0${c.mode.toString(8)}): ${c.what}`);
    } else {
      parts.push(unifiedDiff(c.path, c.before, c.after).trimEnd());
    }
  }
  return parts.join("\n");
}

/** Applies a plan; returns one line per thing it did. */
export async function applyRedirect(plan: RedirectPlan): Promise<string[]> {
  const done: string[] = [];
  const kube = plan.changes.find((c) => c.path === plan.kubeconfig);
  for (const c of plan.changes) {
    if (c === kube) continue;
    // Secret files live one level down (identities/), the only directory that needs 0700.
    if (c.secret) await ensureDir(dirname(dirname(c.path)), 0o755);
    await ensureDir(dirname(c.path), c.secret ? 0o700 : 0o755);
    await replaceFile(c.path, c.after, c.mode);
    done.push(`${c.before === null ? "wrote" : "updated"} ${c.path}: ${c.what}`);
  }
  if (plan.backup !== null) {
    await replaceFile(plan.backupPath, plan.backup, 0o600);
    done.push(`backed up ${plan.kubeconfig} to ${plan.backupPath}`);
  }
  if (kube) {
    await replaceFile(kube.path, kube.after, kube.mode);
    done.push(`updated ${kube.path}: context "${plan.context}", cluster "${plan.cluster}": ${kube.what}`);
  }
  return done;
}

/** Puts the backed-up kubeconfig back byte for byte and removes the backup. */
export async function restoreKubeconfig(path: string): Promise<string[]> {
  const backupPath = path + BACKUP_SUFFIX;
  const bytes = await readIfExists(backupPath);
  if (bytes === null) {
    throw new ConfigError(
      `no backup ${backupPath}: ${basename(path)} was not redirected (or is already restored)`,
    );
  }
  const mode = (await modeOf(path)) ?? 0o600;
  await replaceFile(path, bytes, mode);
  try {
    await Deno.remove(backupPath);
  } catch (err) {
    throw new ConfigError(`restored ${path} but could not remove ${backupPath}: ${errMessage(err)}`);
  }
  return [`restored ${path} from ${backupPath} and removed the backup`];
}
