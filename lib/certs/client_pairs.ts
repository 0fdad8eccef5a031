/**
 * Client identities from `--tls-config-file`: a JSON array of `{"cert": PATH, "key": PATH}`, each pair
 * indexed by its certificate CN (groups = O values). Cert and key may be one combined PEM file
 * (kubelet-client-current.pem), blocks in either order.
 */
import { dirname, resolve } from "node:path";
import { log } from "../log.ts";
import { ConfigError, errMessage } from "../config/errors.ts";
import { readText } from "../files/read_text.ts";
import {
  certBlocks,
  daysUntil,
  keyBlock,
  keyMatches,
  parseBundle,
  parseCert,
  parseKey,
  signedBy,
  validity,
} from "./pem.ts";

/** A loaded, checked client certificate and key. */
export interface ClientPair {
  cn: string;
  groups: string[];
  /** The leaf certificate followed by any chain certificates found in the cert file. */
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
  /** Hex, upper case. */
  serial: string;
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

/** One entry of the tls-config file, paths resolved against the file's directory. */
export interface PairEntry {
  cert: string;
  key: string;
}

/** Warn when a certificate expires within this many days. */
export const EXPIRY_WARNING_DAYS = 7;

const SHAPE = `expected a JSON array of {"cert": PATH, "key": PATH}`;

/** Parses the tls-config text; throws ConfigError with one line naming the file and the entry. */
export function parseTlsConfig(text: string, path: string): PairEntry[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`tls config ${path} is not valid JSON: ${errMessage(e)}`);
  }
  if (!Array.isArray(data)) throw new ConfigError(`tls config ${path}: ${SHAPE}`);
  const base = dirname(resolve(path));
  return data.map((item, i) => {
    const where = `tls config ${path} entry ${i + 1}`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw new ConfigError(`${where} is not an object: ${SHAPE}`);
    }
    const rec = item as Record<string, unknown>;
    for (const field of ["cert", "key"]) {
      if (!(field in rec)) throw new ConfigError(`${where} has no "${field}" field: ${SHAPE}`);
      if (typeof rec[field] !== "string" || rec[field] === "") {
        throw new ConfigError(`${where}: "${field}" must be a non-empty string path`);
      }
    }
    return { cert: resolve(base, rec.cert as string), key: resolve(base, rec.key as string) };
  });
}

/** Raw file contents of one pair; when cert and key are the same file it is read once. */
export interface PairTexts {
  certText: string;
  keyText: string;
}

/** Reads a pair's files; throws ConfigError for a missing or unreadable file. */
export async function readPairTexts(entry: PairEntry): Promise<PairTexts> {
  const certText = await readText(entry.cert, "client certificate file");
  const keyText = entry.key === entry.cert ? certText : await readText(entry.key, "client key file");
  return { certText, keyText };
}

/**
 * Parses and checks a pair: a certificate, a private key that matches it, and (when a CA bundle is
 * given) a signature by that CA. Validity dates are not checked here (see validityProblem).
 */
export function parsePair(entry: PairEntry, texts: PairTexts, caPem?: string): ClientPair {
  const certs = certBlocks(texts.certText);
  if (certs.length === 0) {
    throw new ConfigError(`client certificate file ${entry.cert} has no PEM certificate`);
  }
  const kb = keyBlock(texts.keyText);
  if (!kb) throw new ConfigError(`client key file ${entry.key} has no PEM private key`);
  let info, chain, key;
  try {
    info = parseCert(certs[0]);
    chain = certs.slice(1).map((c) => parseCert(c).x509);
  } catch (e) {
    throw new ConfigError(`client certificate file ${entry.cert}: ${errMessage(e)}`);
  }
  try {
    key = parseKey(kb);
  } catch (e) {
    throw new ConfigError(`client key file ${entry.key}: ${errMessage(e)}`);
  }
  if (!keyMatches(info.x509, key)) {
    throw new ConfigError(
      `private key ${entry.key} does not match certificate ${entry.cert} (CN "${info.cn}")`,
    );
  }
  if (!info.cn) {
    throw new ConfigError(`client certificate ${entry.cert} has no CN: it cannot name an identity`);
  }
  if (caPem !== undefined) {
    let roots;
    try {
      roots = parseBundle(caPem);
    } catch (e) {
      throw new ConfigError(`CA bundle: ${errMessage(e)}`);
    }
    if (!signedBy(info.x509, roots, chain)) {
      throw new ConfigError(
        `client certificate ${entry.cert} (CN "${info.cn}") is not signed by the cluster CA (--ca-file)`,
      );
    }
  }
  return {
    cn: info.cn,
    groups: info.groups,
    certPem: certs.join(""),
    keyPem: kb.text,
    certFile: entry.cert,
    keyFile: entry.key,
    serial: info.serial,
    fingerprint256: info.fingerprint256,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
  };
}

/** A one-line problem when the pair is expired or not yet valid, else undefined. */
export function validityProblem(pair: ClientPair, now = new Date()): string | undefined {
  const v = validity(pair, now);
  if (v === "expired") {
    return `client certificate ${pair.certFile} (CN "${pair.cn}") expired at ${pair.notAfter.toISOString()}`;
  }
  if (v === "not-yet-valid") {
    return `client certificate ${pair.certFile} (CN "${pair.cn}") is not valid until ${pair.notBefore.toISOString()}`;
  }
  return undefined;
}

/** A one-line warning when the pair expires within EXPIRY_WARNING_DAYS, else undefined. */
export function expiryWarning(pair: ClientPair, now = new Date()): string | undefined {
  const days = daysUntil(pair.notAfter, now);
  if (validity(pair, now) !== "valid" || days >= EXPIRY_WARNING_DAYS) return undefined;
  return `client certificate ${pair.certFile} (CN "${pair.cn}") expires in ${days} day(s) at ${pair.notAfter.toISOString()}`;
}

/** One-line message for two configured pairs with the same CN. */
export function duplicateMessage(cn: string, first: ClientPair, second: ClientPair): string {
  return `duplicate client identity CN "${cn}": ${first.certFile} and ${second.certFile}`;
}

/** Loads one pair from disk, strictly: unreadable, mismatched, unsigned, expired or not yet valid throws. */
export async function loadPair(entry: PairEntry, caPem?: string, now = new Date()): Promise<ClientPair> {
  const pair = parsePair(entry, await readPairTexts(entry), caPem);
  const problem = validityProblem(pair, now);
  if (problem) throw new ConfigError(problem);
  return pair;
}

/**
 * Startup validation of `--tls-config-file`: every pair must load, match, be signed by `caPem` (when
 * given) and be valid now; CNs must be unique. Throws ConfigError with one clear line.
 * Pairs expiring within EXPIRY_WARNING_DAYS load fine (the watcher warns about them).
 */
export async function loadTlsConfig(
  path: string,
  caPem?: string,
  opts: { allowMissing?: boolean } = {},
): Promise<ClientPair[]> {
  const entries = parseTlsConfig(await readText(path, "tls config file"), path);
  const pairs: ClientPair[] = [];
  const byCn = new Map<string, ClientPair>();
  for (const entry of entries) {
    // A bootstrapping kubelet has not written its first certificate yet: wait for it.
    const missing = [entry.cert, entry.key].find((f) => !exists(f));
    if (opts.allowMissing && missing) {
      log.warn("client certificate file does not exist yet; re-reading every second until it does", {
        file: missing,
      });
      continue;
    }
    const pair = await loadPair(entry, caPem);
    const other = byCn.get(pair.cn);
    if (other) throw new ConfigError(duplicateMessage(pair.cn, other, pair));
    byCn.set(pair.cn, pair);
    pairs.push(pair);
  }
  return pairs;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
