import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { codeOf, LiteError, withCode } from "./errors.ts";

Deno.test("withCode: an error with its own code keeps it, its message and the original as cause", () => {
  const raw = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
  const e = withCode(raw);
  assert(e instanceof LiteError);
  assertEquals([e.code, e.message, e.cause], ["ECONNREFUSED", raw.message, raw]);
});

Deno.test("withCode: foreign errors without a code are classified by what they say", () => {
  assertEquals(withCode(new Error("socket hang up")).code, "ECONNRESET");
  assertEquals(withCode(new Error("Connection timed out (os error 110)")).code, "ETIMEDOUT");
  assertEquals(withCode(new Error("read timeout")).code, "ETIMEDOUT");
  assertEquals(withCode(new Error("Connection reset by peer (os error 104)")).code, "ECONNRESET");
  assertEquals(withCode(new Error("Connection refused (os error 111)")).code, "ECONNREFUSED");
  assertEquals(withCode(new Error("invalid peer certificate: UnknownIssuer")).code, "EUNKNOWN");
  assertEquals(withCode("a string").message, "a string");
});

Deno.test("withCode: a LiteError passes through as itself", () => {
  const e = new LiteError("EPROTO", "bad", { retryable: true });
  assert(withCode(e) === e);
  assertEquals(codeOf(e), "EPROTO");
  assert(e.retryable);
});
