/**
 * Why a client certificate did not verify, in terms an operator can act on. The TLS layer reports
 * one code (Deno: UNABLE_TO_VERIFY_LEAF_SIGNATURE) for a clock problem and an attack alike; this
 * re-checks the presented certificate against the cluster CA(s) and the time.
 */
import { X509Certificate } from "node:crypto";
import { parseBundle, signedBy, validity } from "./pem.ts";

/**
 * "unknown issuer (…)", "expired (…)" or "not yet valid (…)"; undefined when none applies (the
 * TLS layer's own reason then stands) or the certificate cannot be read.
 */
export function clientCertFailure(
  der: Uint8Array | undefined,
  caPem: string,
  now = new Date(),
): string | undefined {
  if (!der || der.byteLength === 0) return undefined;
  let cert: X509Certificate;
  let roots: X509Certificate[];
  try {
    cert = new X509Certificate(der);
    roots = parseBundle(caPem);
  } catch {
    return undefined;
  }
  if (!signedBy(cert, roots)) {
    return `unknown issuer (not signed by the cluster CA; issuer ${cert.issuer.replaceAll("\n", ", ")})`;
  }
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  switch (validity({ notBefore, notAfter }, now)) {
    case "expired":
      return `expired (notAfter ${notAfter.toISOString()})`;
    case "not-yet-valid":
      return `not yet valid (notBefore ${notBefore.toISOString()}; check the clocks)`;
    default:
      return undefined;
  }
}
