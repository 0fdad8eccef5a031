/** The write queue's failure accounting: a store that rejects writes (a full disk), then recovers. */
import assert, { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { log } from "../log.ts";
import type { CacheKey, Store, WriteOp } from "../store/store.ts";
import { WriteQueue } from "./write_queue.ts";

const KEY: CacheKey = { identity: "anonymous", resource: "core~v1~pods", namespace: "default", name: "p" };
const put: WriteOp = {
  op: "putObject",
  key: KEY,
  value: { body: new Uint8Array(10), contentType: "application/json", storedAt: 0 },
};

/** A store that throws ENOSPC's message while `full` is set. */
function diskStore() {
  const state = { full: true, applied: 0 };
  const store = {
    backend: "test",
    apply: (ops: WriteOp[]) => {
      if (state.full) return Promise.reject(new Error("No space left on device (os error 28)"));
      state.applied += ops.length;
      return Promise.resolve();
    },
  } as unknown as Store;
  return { store, state };
}

Deno.test("write queue: failed writes are counted with their first and last time, one log line per window", async () => {
  const lines: string[] = [];
  log.configure({ sink: (l) => lines.push(l), repeatWindowMs: 60_000 });
  try {
    const { store, state } = diskStore();
    const q = new WriteQueue(store, 1 << 20);
    const before = Date.now();
    for (let i = 0; i < 50; i++) {
      q.push(put);
      assertEquals(await q.idle(5000), true, "the batch was tried");
    }
    assertEquals([q.failed, q.written, q.failing?.failedOps, q.failing?.failedBatches], [50, 0, 50, 50]);
    assert(q.failing!.sinceMs >= before && q.failing!.lastMs >= q.failing!.sinceMs);
    assertMatch(q.failing!.error, /No space left on device/);
    const failedLines = () => lines.filter((l) => l.includes("cache write failed"));
    assertEquals(failedLines().length, 1, "49 more are counted, not written");

    state.full = false;
    q.push(put);
    assertEquals(await q.idle(5000), true);
    assertEquals([q.failing, q.written, q.lastFailure?.failedOps], [undefined, 1, 50]);
    assert(lines.some((l) => /INFO {2}cache writes succeed again failedOps=50/.test(l)));
    log.flush();
    assertMatch(failedLines()[1], /\.\.\. and 49 more like this in the last \d+ s .*repeated=49/);
  } finally {
    log.flush();
    log.configure({ sink: (l) => console.error(l), repeatWindowMs: 10_000 });
  }
});

Deno.test("write queue: a large batch written schedules one reclaim collection after the write", async () => {
  const { setCollector, LARGE_ANSWER_BYTES } = await import("../http/reclaim.ts");
  let collections = 0;
  const prev = setCollector(() => collections++);
  try {
    const { store, state } = diskStore();
    state.full = false;
    const q = new WriteQueue(store, 64 << 20);
    q.push(put);
    assertEquals(await q.idle(5000), true, "the small write was applied");
    const big: WriteOp = {
      op: "putObject",
      key: KEY,
      value: { body: new Uint8Array(LARGE_ANSWER_BYTES), contentType: "application/json", storedAt: 0 },
    };
    q.push(big);
    assertEquals(await q.idle(5000), true, "the large write was applied");
    assertEquals(state.applied, 2);
    const deadline = Date.now() + 5000;
    while (collections === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assertEquals(collections, 1, "one collection within 5 s of the large write");
  } finally {
    setCollector(prev);
  }
});
