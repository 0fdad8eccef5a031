/** A large answer schedules one full GC shortly after it; a burst of them costs one. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type ResponseSink, ServerResponse } from "./response.ts";
import { LARGE_ANSWER_BYTES, RECLAIM_DELAY_MS, setCollector } from "./reclaim.ts";

const sink: ResponseSink = { send: (_b, done) => done(), finished() {}, abort() {} };
const FOR = { method: "GET", versionMinor: 1 as const, keepAlive: true };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (bounded) until `cond` holds, saying what it waited for. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

Deno.test("a large answer (whole or streamed) is followed by one full GC; small ones by none", async () => {
  let calls = 0;
  const prev = setCollector(() => calls++);
  try {
    const big = new Uint8Array(LARGE_ANSWER_BYTES);
    // Two whole answers and one written in pieces, back to back: one collection after the last.
    for (let i = 0; i < 2; i++) {
      const res = new ServerResponse(sink, FOR);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(big);
    }
    const streamed = new ServerResponse(sink, FOR);
    streamed.writeHead(200, {});
    streamed.write(big.subarray(0, LARGE_ANSWER_BYTES / 2));
    streamed.end(big.subarray(LARGE_ANSWER_BYTES / 2));
    await until(() => calls > 0, "the collection after large answers");
    await sleep(RECLAIM_DELAY_MS * 2);
    assertEquals(calls, 1);
    const small = new ServerResponse(sink, FOR);
    small.writeHead(200, {});
    small.end(new Uint8Array(1024));
    await sleep(RECLAIM_DELAY_MS * 2);
    assertEquals(calls, 1);
  } finally {
    setCollector(prev);
  }
});
