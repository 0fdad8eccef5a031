/**
 * PEM parsing and certificate checks on top of node:crypto. Pure functions: no file access, no logging.
 * Every failure is a plain one-line message the caller wraps with file names.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { errMessage } from "../config/errors.ts";

/** One `-----BEGIN <label>----- ... -----END <label>-----` block, text included. */
export interface PemBlock {
  label: string;
  text: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Splits a text into its PEM blocks, in order; anything between blocks is ignored. */
export function splitPem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) out.push({ label: m[1], text: m[0] + "\n" });
  return out;
}

/** The CERTIFICATE blocks of a text, each one PEM string. */
export function certBlocks(text: string): string[] {
  return splitPem(text).filter((b) => b.label === "CERTIFICATE").map((b) => b.text);
}

/** The first private key block (PKCS#8, PKCS#1 RSA, SEC1 EC or encrypted), or undefined. */
export function keyBlock(text: string): PemBlock | undefined {
  return splitPem(text).find((b) => b.label.endsWith("PRIVATE KEY"));
}

/** What we need to know about a certificate, read once. */
export interface CertInfo {
  x509: X509Certificate;
  cn: string;
  /** O values, in order: Kubernetes groups. */
  groups: string[];
  /** Hex, upper case, no leading zeros. */
  serial: string;
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

/** Parses one PEM certificate; throws Error with a short reason. */
export function parseCert(pem: string): CertInfo {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (e) {
    throw new Error(`cannot parse certificate (${errMessage(e)})`);
  }
  const subject = parseDn(x509.subject);
  return {
    x509,
    cn: subject.find(([k]) => k === "CN")?.[1] ?? "",
    groups: subject.filter(([k]) => k === "O").map(([, v]) => v),
    serial: x509.serialNumber.toUpperCase().replace(/^0+(?=.)/, ""),
    fingerprint256: x509.fingerprint256,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
  };
}

/**
 * The subject CN of the first certificate in `pem` (which may also hold a key), as the identity
 * lite-apiserver keys the pair by; null when there is no parseable certificate or no CN.
 */
export function certCommonName(pem: string): string | null {
  const first = certBlocks(pem)[0];
  if (first === undefined) return null;
  try {
    return parseCert(first).cn || null;
  } catch {
    return null;
  }
}

/** node:crypto prints a DN one attribute per line; values with special characters are JSON-quoted. */
function parseDn(dn: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of dn.split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    let value = line.slice(eq + 1);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value);
      } catch { /* keep the raw text */ }
    }
    out.push([line.slice(0, eq), value]);
  }
  return out;
}

/** Parses a private key PEM; throws Error with a short reason. */
export function parseKey(block: PemBlock): KeyObject {
  if (block.label === "ENCRYPTED PRIVATE KEY") throw new Error("encrypted private keys are not supported");
  try {
    return createPrivateKey(block.text);
  } catch (e) {
    throw new Error(`cannot parse private key (${errMessage(e)})`);
  }
}

/** True when the private key belongs to the certificate. */
export function keyMatches(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false;
  }
}

/** Parses every certificate of a CA bundle; throws Error when there is none or one is unreadable. */
export function parseBundle(pem: string): X509Certificate[] {
  const blocks = certBlocks(pem);
  if (blocks.length === 0) throw new Error("no PEM certificate found");
  return blocks.map((b) => parseCert(b).x509);
}

/**
 * True when `leaf` chains to one of `roots`, possibly through the `intermediates` shipped beside it
 * (as in a cert file holding leaf + chain). Signatures only: validity dates are checked separately.
 */
export function signedBy(
  leaf: X509Certificate,
  roots: X509Certificate[],
  intermediates: X509Certificate[] = [],
): boolean {
  const issuedBy = (c: X509Certificate, by: X509Certificate) => {
    try {
      return c.checkIssued(by) && c.verify(by.publicKey);
    } catch {
      return false;
    }
  };
  let current = leaf;
  for (let depth = 0; depth < 6; depth++) {
    if (roots.some((r) => issuedBy(current, r))) return true;
    const next = intermediates.find((i) => i !== current && issuedBy(current, i));
    if (!next) return false;
    current = next;
  }
  return false;
}

export type Validity = "valid" | "not-yet-valid" | "expired";

/** Where `now` falls in the certificate's validity window. */
export function validity(info: { notBefore: Date; notAfter: Date }, now = new Date()): Validity {
  if (now < info.notBefore) return "not-yet-valid";
  if (now > info.notAfter) return "expired";
  return "valid";
}

/** Days, rounded down, from now until `t` (negative when past). */
export function daysUntil(t: Date, now = new Date()): number {
  return Math.floor((t.getTime() - now.getTime()) / 86_400_000);
}
