/**
 * Errors that enter from node/Deno (a dial that fails, a socket error) get a code where they enter
 * the pool, so callers (failover) decide on codes only.
 */
import { deepStrictEqual as assertEquals, fail, ok as assert } from "node:assert/strict";
import { LiteError } from "../errors.ts";
import { endpointOf } from "./endpoint.ts";
import type { Dial } from "./https_proxy.ts";
import { UpstreamPool } from "./pool.ts";

/** A dialer whose connection attempts fail with `err`, as node:tls reports them. */
const failing = (err: Error): Dial => () => ({ ready: Promise.reject(err), cancel: () => {} });

async function failureOf(err: Error, http2: "auto" | "off"): Promise<LiteError> {
  const pool = new UpstreamPool({ ca: "", dial: failing(err), http2 });
  try {
    const call = pool.request(endpointOf("https://127.0.0.1:1"), { method: "GET", path: "/", headers: {} });
    return await call.response.then(() => fail("no answer expected"), (e) => e);
  } finally {
    pool.destroy();
  }
}

for (const http2 of ["off", "auto"] as const) {
  Deno.test(`pool (http2 ${http2}): a dial failure without a code gets one from its words; one with a code keeps it`, async () => {
    const hangUp = await failureOf(new Error("socket hang up"), http2);
    assert(hangUp instanceof LiteError);
    assertEquals([hangUp.code, hangUp.message], ["ECONNRESET", "socket hang up"]);
    const timedOut = await failureOf(new Error("Connection timed out (os error 110)"), http2);
    assertEquals(timedOut.code, "ETIMEDOUT");
    const refused = await failureOf(
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      http2,
    );
    assertEquals(refused.code, "ECONNREFUSED");
    const other = await failureOf(new Error("something else"), http2);
    assertEquals(other.code, "EUNKNOWN");
  });
}
