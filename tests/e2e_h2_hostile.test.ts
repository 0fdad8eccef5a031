/**
 * A hostile HTTP/2 cloud (issue 21's attack cases; the bench's h2-* cases measure memory): a cloud
 * that resets every stream fails those requests only (the connection is alive, so the endpoint is
 * reachable: nobody else goes offline, the log says nothing), and a cloud that never grants window
 * gets its stalled writes timed out as an HTTP/1.1 cloud's are.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { startCluster, startLite } from "./support/harness.ts";
import { type H2Mode, startHostileH2 } from "./support/hostile_h2.ts";

async function setUp(mode: H2Mode, extra: string[] = []) {
  const cluster = await startCluster();
  const h2 = startHostileH2(await cluster.pki.server("hostile-h2"), mode);
  const lite = await startLite(cluster, {
    upstream: h2.url,
    extra: ["--health-check-interval", "1s", ...extra],
  });
  const anonymous = Deno.createHttpClient({ caCerts: [cluster.pki.caPem], http2: false });
  const kubelet = Deno.createHttpClient({
    caCerts: [cluster.pki.caPem],
    cert: cluster.kubelet.certPem,
    key: cluster.kubelet.keyPem,
    http2: false,
  });
  return {
    cluster,
    h2,
    lite,
    anonymous,
    kubelet,
    async close() {
      anonymous.close();
      kubelet.close();
      await lite.kill();
      await h2.close();
      await cluster.close();
    },
  };
}

Deno.test("HTTP/2 cloud resetting every stream: those requests fail, the endpoint stays healthy, kubelet is answered by the cloud", async () => {
  const w = await setUp("rapid-reset");
  try {
    // 8 clients at once, as a busy node's would be (a health probe in between cannot mask them).
    const statuses: number[] = [];
    await Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = 0; i < 8; i++) {
        const r = await fetch(`${w.lite.url}/api/v1/namespaces/reset/configmaps/c${k}-${i}`, {
          client: w.anonymous,
          signal: AbortSignal.timeout(10_000),
        });
        await r.body?.cancel();
        statuses.push(r.status);
      }
    }));
    assert(statuses.some((s) => s >= 500), `reset streams fail: ${statuses.join(",")}`);
    assert(w.h2.resets >= 64, `the cloud reset ${w.h2.resets} streams`);
    // The cloud is reachable: still online, and kubelet's node comes from it (nothing was cached).
    const node = await fetch(`${w.lite.url}/api/v1/nodes/edge-1`, {
      client: w.kubelet,
      signal: AbortSignal.timeout(10_000),
    });
    assertEquals(node.status, 200);
    assertEquals((await node.json()).metadata.name, "edge-1");
    // (A health probe slowed by a loaded machine may fail on its own: only resets are asserted here.)
    const unhealthy = w.lite.lines.filter((l) => /upstream endpoint unhealthy.*reset the stream/.test(l));
    assertEquals(unhealthy, []);
  } finally {
    await w.close();
  }
});

Deno.test("HTTP/2 cloud that never grants window: a stalled request body times out (504) as on HTTP/1.1", async () => {
  const w = await setUp("no-window", ["--write-timeout", "2s"]);
  try {
    const body = new Uint8Array(1 << 20).fill(97);
    const r = await fetch(`${w.lite.url}/api/v1/namespaces/default/configmaps`, {
      client: w.anonymous,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      signal: AbortSignal.timeout(20_000),
    });
    await r.body?.cancel();
    assertEquals(r.status, 504);
    // kubelet is answered meanwhile and after (its own connection, no body to stall).
    const node = await fetch(`${w.lite.url}/api/v1/nodes/edge-1`, {
      client: w.kubelet,
      signal: AbortSignal.timeout(10_000),
    });
    assertEquals(node.status, 200);
    await node.body?.cancel();
  } finally {
    await w.close();
  }
});
