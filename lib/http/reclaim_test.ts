/**
 * Bulk bytes (large answers, request bodies, bytes dropped) are followed by a full GC once the
 * traffic stops; a flood that never stops gets one per BURST_BYTES, rate-limited; small answers and
 * ordinary traffic none.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type ResponseSink, ServerResponse } from "./response.ts";
import {
  BURST_BYTES,
  BURST_INTERVAL_MS,
  CONNECTION_BYTES,
  connectionClosed,
  LARGE_ANSWER_BYTES,
  passed,
  RECLAIM_DELAY_MS,
  setCollector,
  SMALL_ANSWER_BYTES,
} from "./reclaim.ts";

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

/** Runs `fn` with a counting collector in place. */
async function counting(fn: (calls: () => number) => Promise<void>): Promise<void> {
  let calls = 0;
  const prev = setCollector(() => calls++);
  try {
    await fn(() => calls);
  } finally {
    setCollector(prev);
  }
}

Deno.test("large answers (whole or streamed) are followed by one full GC once they stop", async () => {
  await counting(async (calls) => {
    const big = new Uint8Array(LARGE_ANSWER_BYTES / 2);
    // A whole answer and one written in pieces, back to back (under BURST_BYTES together).
    const res = new ServerResponse(sink, FOR);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(big);
    const streamed = new ServerResponse(sink, FOR);
    streamed.writeHead(200, {});
    streamed.write(big.subarray(0, big.length / 2));
    streamed.end(big.subarray(big.length / 2));
    await until(() => calls() > 0, "the collection after large answers");
    await sleep(RECLAIM_DELAY_MS * 2);
    assertEquals(calls(), 1);
  });
});

Deno.test("small whole answers never schedule a collection, however many", async () => {
  await counting(async (calls) => {
    const small = new Uint8Array(SMALL_ANSWER_BYTES - 1);
    for (let i = 0; i < (2 * BURST_BYTES) / small.length; i++) {
      const res = new ServerResponse(sink, FOR);
      res.writeHead(200, {});
      res.end(small);
    }
    await sleep(RECLAIM_DELAY_MS * 2);
    assertEquals(calls(), 0);
  });
});

Deno.test("a flood that never stops: one collection per BURST_BYTES, at most one per interval", async () => {
  let calls = 0;
  const chunk = 64 << 10;
  const prev = setCollector(() => {
    // The flood goes on right after the first collection: as much again, within the interval.
    if (++calls === 1) { for (let n = 0; n < BURST_BYTES; n += chunk) passed(chunk); }
  });
  try {
    // BURST_BYTES in one turn: one collection on the next turn, while the bytes keep coming.
    for (let n = 0; n < BURST_BYTES; n += chunk) passed(chunk);
    await until(() => calls === 1, "the burst collection");
    await sleep(BURST_INTERVAL_MS / 5);
    assertEquals(calls, 1);
    // Once the flood stops, the quiet-time one.
    await until(() => calls === 2, "the collection after the flood stopped");
  } finally {
    setCollector(prev);
  }
});

Deno.test("a steady flood is collected while it goes on (the quiet-time collection never comes)", async () => {
  await counting(async (calls) => {
    // 1 MiB every 20 ms: each resets the quiet-time timer, so only the burst rule can collect.
    const end = performance.now() + 5000;
    while (calls() === 0) {
      if (performance.now() > end) throw new Error("timed out waiting for a collection during the flood");
      passed(1 << 20);
      await sleep(20);
    }
  });
});

Deno.test("closed connections count: a churn of them is followed by a collection", async () => {
  await counting(async (calls) => {
    for (let i = 0; i < LARGE_ANSWER_BYTES / CONNECTION_BYTES - 1; i++) connectionClosed();
    await sleep(RECLAIM_DELAY_MS * 2);
    assertEquals(calls(), 0);
    connectionClosed();
    await until(() => calls() === 1, "the collection after a connection churn");
  });
});
