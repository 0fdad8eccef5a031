import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { LiteError } from "../errors.ts";
import { unreachableReason } from "./kube_client.ts";

const coded = (code: string, message = code) => Object.assign(new Error(message), { code });

Deno.test("unreachableReason: the start-up line's reason comes from the error's code", () => {
  assertEquals(unreachableReason(coded("ECONNREFUSED"), 1000), "connection refused");
  assertEquals(
    unreachableReason(new LiteError("ETIMEDOUT", "timeout: no answer within 1s"), 1000),
    "timeout: no answer within 1s",
  );
  assertEquals(
    unreachableReason(
      coded("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "unable to verify the first certificate"),
      1000,
    ),
    "TLS: certificate verify failed: the server's certificate is not signed by the kubeconfig's " +
      "certificate-authority (certificate unknown: UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
  );
  assertEquals(
    unreachableReason(coded("ERR_TLS_CERT_ALTNAME_INVALID"), 1000),
    "TLS: certificate verify failed: the server's certificate is not valid for this host (ERR_TLS_CERT_ALTNAME_INVALID)",
  );
  // A code on the cause counts too (a LiteError wrapping a node error).
  assertEquals(
    unreachableReason(new LiteError("EUNKNOWN", "x", { cause: coded("ECONNREFUSED") }), 1000),
    "connection refused",
  );
});
