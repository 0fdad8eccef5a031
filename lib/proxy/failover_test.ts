import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { isConnectError, shouldFailOver } from "./failover.ts";
import { withCode } from "../errors.ts";

Deno.test("failover decides on codes, not on what a message says", () => {
  assertEquals(isConnectError({ code: "ECONNREFUSED" }), true);
  assertEquals(isConnectError({ code: "ETIMEDOUT" }), true);
  assertEquals(isConnectError({ code: "EPROTO" }), false);
  // A bare "timeout" message is not a code: lib/upstream classifies such errors where they enter.
  assertEquals(isConnectError(Object.assign(new Error("timeout"), { code: undefined })), false);
  assertEquals(isConnectError(withCode(new Error("socket hang up"))), true);
  assertEquals(isConnectError(withCode(new Error("the upstream sent garbage"))), false);
});

Deno.test("failover: only a replayable request, only while another endpoint is left", () => {
  const refused = { code: "ECONNREFUSED" };
  assertEquals(shouldFailOver(refused, 0, 2, true), true);
  assertEquals(shouldFailOver(refused, 1, 2, true), false);
  assertEquals(shouldFailOver(refused, 0, 2, false), false);
});
