import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { createPki } from "../../tests/support/pki.ts";
import { clientCertFailure } from "./client_cert_check.ts";

const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);

Deno.test("client certificate failures are named: unknown issuer, expired, not yet valid", async () => {
  const pki = await createPki();
  try {
    const day = 86_400_000;
    const good = await pki.client("alice", ["devs"]);
    const expired = await pki.client("bob", [], {
      name: "expired",
      notBefore: new Date(Date.now() - 10 * day),
      notAfter: new Date(Date.now() - day),
    });
    const future = await pki.client("carol", [], {
      name: "future",
      notBefore: new Date(Date.now() + day),
      notAfter: new Date(Date.now() + 10 * day),
    });
    const rogue = await pki.rogue("admin", ["system:masters"]);
    assertEquals(clientCertFailure(der(good.certPem), pki.caPem), undefined);
    match(clientCertFailure(der(expired.certPem), pki.caPem)!, /^expired \(notAfter \d{4}-/);
    match(clientCertFailure(der(future.certPem), pki.caPem)!, /^not yet valid \(notBefore \d{4}-.*clocks/);
    match(
      clientCertFailure(der(rogue.certPem), pki.caPem)!,
      /^unknown issuer \(not signed by the cluster CA/,
    );
    // A CA bundle: any of its certificates may be the issuer.
    const other = await createPki();
    try {
      match(clientCertFailure(der(good.certPem), other.caPem)!, /^unknown issuer/);
      assertEquals(clientCertFailure(der(good.certPem), other.caPem + pki.caPem), undefined);
    } finally {
      await Deno.remove(other.dir, { recursive: true });
    }
    assertEquals(clientCertFailure(undefined, pki.caPem), undefined);
    assertEquals(clientCertFailure(new Uint8Array([1, 2, 3]), pki.caPem), undefined);
  } finally {
    await Deno.remove(pki.dir, { recursive: true });
  }
});
