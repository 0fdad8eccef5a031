/** The admin listener over HTTP with a real write queue whose store rejects writes (a full disk). */
import assert, { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { WriteQueue } from "../cache/write_queue.ts";
import { log } from "../log.ts";
import type { Store, WriteOp } from "../store/store.ts";
import { startAdminServer } from "./admin_server.ts";
import { ProxyMetrics } from "./metrics.ts";
import type { StatusReport } from "./status.ts";

const put: WriteOp = {
  op: "putObject",
  key: { identity: "anonymous", resource: "core~v1~pods", namespace: "default", name: "p" },
  value: { body: new Uint8Array(10), contentType: "application/json", storedAt: 0 },
};

/** A store that rejects writes as a full disk does while `full` is set. */
function diskStore() {
  const state = { full: true };
  const store = {
    backend: "file",
    apply: () =>
      state.full ? Promise.reject(new Error("No space left on device (os error 28)")) : Promise.resolve(),
  } as unknown as Store;
  return { store, state };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

Deno.test("admin: cache write failures show in /status and /metrics; /readyz stays ready", async () => {
  log.configure({ sink: () => {} });
  const { store, state } = diskStore();
  const queue = new WriteQueue(store, 1 << 20);
  const admin = await startAdminServer({
    address: "127.0.0.1",
    port: 0,
    health: { online: true, endpoints: [], changedAt: Date.now(), transitions: 0 },
    store: { backend: "file", entries: () => Promise.resolve([]) },
    queue,
    watches: { count: 0 },
    metrics: new ProxyMetrics(),
  });
  try {
    const healthy = JSON.parse((await get(`${admin.url}/status`)).text) as StatusReport;
    assertEquals([healthy.healthy, healthy.problems, healthy.queue.failing], [true, [], undefined]);

    for (let i = 0; i < 3; i++) {
      queue.push(put);
      assertEquals(await queue.idle(5000), true, "the write was tried");
    }
    const s = JSON.parse((await get(`${admin.url}/status`)).text) as StatusReport;
    assertEquals(s.healthy, false);
    assertEquals(s.queue.failing?.failedOps, 3);
    assertMatch(s.queue.failing!.error, /No space left on device/);
    assertEquals(s.problems.length, 1);
    assertMatch(
      s.problems[0],
      /^cache writes failing since \S+: No space left on device .*3 cache writes lost/,
    );
    const m = (await get(`${admin.url}/metrics`)).text;
    assertMatch(m, /^lite_apiserver_cache_write_failing 1$/m);
    assertMatch(m, /^lite_apiserver_write_queue_failed_total 3$/m);
    const since = Number(/^lite_apiserver_cache_write_failing_since_seconds (\d+)$/m.exec(m)?.[1]);
    assert(Math.abs(since - Date.now() / 1000) < 60, `since ${since}`);
    // The proxy still answers (requests never wait for the cache): ready.
    assertEquals(await get(`${admin.url}/readyz`), { status: 200, text: "online\n" });

    state.full = false;
    queue.push(put);
    assertEquals(await queue.idle(5000), true);
    const after = JSON.parse((await get(`${admin.url}/status`)).text) as StatusReport;
    assertEquals([after.healthy, after.queue.failing, after.queue.lastFailure?.failedOps], [
      true,
      undefined,
      3,
    ]);
    const m2 = (await get(`${admin.url}/metrics`)).text;
    assertMatch(m2, /^lite_apiserver_cache_write_failing 0$/m);
    assertEquals(/^lite_apiserver_cache_write_failing_since_seconds /m.test(m2), false);
    assertMatch(m2, /^lite_apiserver_cache_write_last_failure_seconds \d+$/m);
  } finally {
    await admin.close();
    log.flush();
    log.configure({ sink: (l) => console.error(l) });
  }
});
