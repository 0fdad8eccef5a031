/**
 * Cache bounds end to end: query parameters that change nothing do not mint entries, and a flood by
 * one identity evicts only that identity's least recently used entries, online, and again at
 * start-up (offline) when the bound is lowered.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type Cluster, httpsClient, startCluster, startLite } from "./support/harness.ts";
import { openStore } from "../lib/store/open_store.ts";
import type { EntryInfo } from "../lib/store/store.ts";

/** One slow probe on a loaded machine must not flip the proxy offline mid-test. */
const STEADY = ["--health-check-failures", "3"];

/** The store's entries per identity, read after the process has flushed and exited. */
async function entriesByIdentity(cacheDir: string): Promise<Map<string, EntryInfo[]>> {
  const store = await openStore({ backend: "sqlite", dir: cacheDir });
  try {
    const out = new Map<string, EntryInfo[]>();
    for (const e of await store.entries()) out.set(e.key.identity, [...out.get(e.key.identity) ?? [], e]);
    return out;
  } finally {
    await store.close();
  }
}

Deno.test("300 GET /version?junk=N leave one cache entry", async () => {
  const cluster: Cluster = await startCluster();
  const lite = await startLite(cluster, { extra: STEADY });
  try {
    const c = httpsClient(lite.url, cluster.pki.caPem);
    try {
      for (let i = 0; i < 300; i++) {
        const r = await c.request(`/version?junk=${i}`);
        assertEquals(r.status, 200);
        await r.body?.cancel();
      }
    } finally {
      c.close();
    }
  } finally {
    await lite.kill();
  }
  try {
    const ids = await entriesByIdentity(lite.cacheDir);
    assertEquals(ids.get("anonymous")?.map((e) => e.key.name), ["%2Fversion"]);
  } finally {
    await cluster.close();
  }
});

Deno.test("a flood by one identity evicts only its own least recently used entries", async (t) => {
  const cluster: Cluster = await startCluster();
  const cacheDir = await Deno.makeTempDir({ prefix: "lite-bounds-" });
  try {
    const bound = ["--cache-max-entries-per-identity", "10", ...STEADY];
    const lite = await startLite(cluster, { cacheDir, extra: bound });
    try {
      const kubelet = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
      const reader = httpsClient(lite.url, cluster.pki.caPem, { token: "reader-token" });
      try {
        for (const p of ["/api/v1/nodes/edge-1", "/api/v1/namespaces/default/configmaps/app-config"]) {
          const r = await kubelet.request(p);
          assertEquals(r.status, 200);
          await r.body?.cancel();
        }
        for (let i = 0; i < 40; i++) {
          const r = await reader.request(`/api/v1/namespaces/default/configmaps?labelSelector=flood%3D${i}`);
          assertEquals(r.status, 200);
          await r.body?.cancel();
        }
      } finally {
        kubelet.close();
        reader.close();
      }
    } finally {
      await lite.kill(); // SIGTERM: the write queue (deletes included) is flushed before exit
    }

    const readerId = (ids: Map<string, EntryInfo[]>) => [...ids.keys()].find((k) => k.startsWith("token~"))!;
    await t.step(
      "online: the flooder keeps at most its bound, newest kept; the kubelet keeps all",
      async () => {
        const ids = await entriesByIdentity(cacheDir);
        const flood = ids.get(readerId(ids))!;
        assert(flood.length <= 10 && flood.length >= 5, `reader has ${flood.length} entries`);
        assert(flood.some((e) => e.key.name.includes("flood%3D39")), "the most recent entry is kept");
        assert(!flood.some((e) => e.key.name.includes("flood%3D0~") || e.key.name.endsWith("flood%3D0")));
        assertEquals(ids.get("cn~system:node:edge-1")?.length, 2);
      },
    );

    await t.step(
      "offline start with a lower bound: trimmed at start-up, still only the flooder",
      async () => {
        await cluster.apiserver.setFault("refuse");
        const lite2 = await startLite(cluster, {
          cacheDir,
          extra: ["--cache-max-entries-per-identity", "3"],
        });
        try {
          await lite2.waitForLine(/upstream unreachable: offline|cache bound reached/);
          await lite2.waitForLine(/cache bound reached/);
          const c = httpsClient(lite2.url, cluster.pki.caPem, { pair: cluster.kubelet });
          try {
            const r = await c.request("/api/v1/nodes/edge-1");
            assertEquals([r.status, r.headers.get("x-lite-apiserver-source")], [200, "cache"]);
            await r.body?.cancel();
          } finally {
            c.close();
          }
        } finally {
          await lite2.kill();
        }
        const ids = await entriesByIdentity(cacheDir);
        assert(ids.get(readerId(ids))!.length <= 3);
        assertEquals(ids.get("cn~system:node:edge-1")?.length, 2);
      },
    );
  } finally {
    await cluster.close();
    await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
  }
});
