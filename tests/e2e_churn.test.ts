/**
 * Churn: concurrent readers and watchers through repeated cuts and restores (blackhole and
 * refuse). Every read must be answered 200, from the cloud or the cache, every watch stays open
 * across the cuts, and the process must stay up. Bounded: three cycles, each waiting on the proxy's own state lines.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { eventually, httpsClient, startCluster, startLite } from "./support/harness.ts";

Deno.test("readers and watchers through repeated cuts and restores never see a failed read", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster);
  const stop = { now: false };
  const failures: string[] = [];
  const counts = { reads: 0, cached: 0, watchesOpened: 0, watchesEnded: 0 };
  const paths = [
    "/api/v1/namespaces/default/pods",
    "/api/v1/nodes/edge-1",
    "/api/v1/namespaces/kube-system/pods",
  ];
  const reader = async (i: number) => {
    const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      while (!stop.now) {
        const path = paths[i % paths.length];
        const r = await c.request(path);
        await r.arrayBuffer();
        counts.reads++;
        if (r.headers.get("x-lite-apiserver-source") === "cache") counts.cached++;
        if (r.status !== 200) failures.push(`${path}: ${r.status}`);
      }
    } catch (e) {
      failures.push(`reader ${i}: ${e}`);
    } finally {
      c.close();
    }
  };
  const watcher = async () => {
    const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      while (!stop.now) {
        const list = await c.json("/api/v1/namespaces/default/pods");
        if (list.status !== 200) {
          failures.push(`relist: ${list.status}`);
          continue;
        }
        const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
        const ac = new AbortController();
        const stopTimer = setInterval(() => stop.now && ac.abort(), 50);
        try {
          const w = await c.request(
            `/api/v1/namespaces/default/pods?watch=1&resourceVersion=${rv}&timeoutSeconds=600`,
            {
              signal: ac.signal,
            },
          );
          if (w.status !== 200) failures.push(`watch: ${w.status}`);
          counts.watchesOpened++;
          await w.body?.pipeTo(new WritableStream()).catch(() => {});
          if (!stop.now) counts.watchesEnded++;
        } catch (e) {
          if (!stop.now) failures.push(`watch: ${e}`);
        } finally {
          clearInterval(stopTimer);
        }
      }
    } finally {
      c.close();
    }
  };
  const workers = [...Array.from({ length: 6 }, (_, i) => reader(i)), watcher(), watcher()];
  try {
    await eventually(() => counts.reads > 50, "the readers running");
    for (const mode of ["blackhole", "refuse", "blackhole"] as const) {
      const from = lite.lines.length;
      await cluster.apiserver.setFault(mode);
      await lite.waitForLine(/upstream unreachable: offline/, 20_000, from);
      const readsAtCut = counts.reads;
      await eventually(() => counts.reads > readsAtCut + 30, "reads served offline");
      await cluster.apiserver.setFault("none");
      await lite.waitForLine(/upstream reachable again/, 20_000, from);
      const readsAtRestore = counts.reads;
      await eventually(() => counts.reads > readsAtRestore + 30, "reads served online again");
    }
    stop.now = true;
    await Promise.all(workers);
    assertEquals(failures, [], "every read answered");
    assert(counts.cached > 0, "some answers came from the cache");
    // Watches survive the cuts: held from the cache, resumed from the cloud, never ended.
    assertEquals([counts.watchesOpened, counts.watchesEnded], [2, 0], "each watcher's one watch stayed open");
    const health = await fetch(`${lite.adminUrl}/healthz`);
    assertEquals([health.status, (await health.text()).trim()], [200, "ok"]);
    console.log(
      `reads ${counts.reads} (${counts.cached} from the cache), watches opened ${counts.watchesOpened}`,
    );
  } finally {
    stop.now = true;
    await Promise.all(workers);
    await cluster.apiserver.setFault("none");
  }
});
