/** Reading the subject CN of a client certificate (the identity lite-apiserver keys pairs by). */
import { X509Certificate } from "node:crypto";

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** The CN of the first certificate in `pem` (which may also hold a key), or null when there is none. */
export function certCommonName(pem: string): string | null {
  const block = CERT_BLOCK.exec(pem);
  if (!block) return null;
  try {
    const subject = new X509Certificate(block[0]).subject;
    const cn = subject.split("\n").find((l) => l.startsWith("CN="));
    return cn ? cn.slice(3) : null;
  } catch {
    return null;
  }
}
