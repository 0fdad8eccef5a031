/**
 * End to end against an HTTP/2 cloud (nginx in front of the simulated apiserver, ALPN h2): each
 * identity's requests and watches are streams on one connection, another opening only at the
 * server's MAX_CONCURRENT_STREAMS; identities never share a connection. `--upstream-http2 off`, and
 * a cloud that offers only HTTP/1.1, keep today's one connection per concurrent request.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  eventually,
  httpsClient,
  type LiteProcess,
  startCluster,
  startLite,
  WatchStream,
} from "./support/harness.ts";

/** `n` watches by the node (its client certificate), each on its own client connection to lite. */
async function openWatches(lite: LiteProcess, cluster: Cluster, n: number, extraQuery = "") {
  const clients = Array.from(
    { length: n },
    () => httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet }),
  );
  const ctl = new AbortController();
  const from = cluster.apiserver.requests.length;
  const watches = await Promise.all(clients.map(async (c, i) => {
    const res = await c.request(
      `/api/v1/namespaces/default/configmaps?watch=1&labelSelector=w%3D${i}${extraQuery}`,
      {
        signal: ctl.signal,
      },
    );
    if (res.status !== 200) assertEquals(res.status, 200, `watch ${i}: ${await res.text()}`);
    return new WatchStream(res.body!);
  }));
  await eventually(
    () =>
      cluster.apiserver.requests.slice(from).filter((r) => r.query.includes("watch=1") && r.status === 200)
        .length >= n,
    `the apiserver answering ${n} watches`,
  );
  return {
    watches,
    close: async () => {
      ctl.abort();
      await Promise.all(watches.map((w) => w.cancel()));
      for (const c of clients) c.close();
    },
  };
}

function addConfigMap(cluster: Cluster, name: string, w: number) {
  cluster.apiserver.create({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, namespace: "default", labels: { w: String(w) } },
    data: {},
  });
}

Deno.test("HTTP/2 cloud: one connection per identity; 150 watches of one identity on 2 (100 streams each)", async (t) => {
  await using cluster = await startCluster({ http2: { maxStreams: 100 } });
  await using lite = await startLite(cluster);
  await t.step("a certificate and a token each reach the apiserver as themselves", async () => {
    const node = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    const reader = httpsClient(lite.url, cluster.pki.caPem, { token: "reader-token" });
    try {
      for (let i = 0; i < 5; i++) {
        assertEquals((await node.json("/api/v1/namespaces/default/pods")).status, 200);
        assertEquals((await reader.json("/api/v1/namespaces/default/pods")).status, 200);
      }
      const seen = cluster.apiserver.requests.filter((r) => r.path === "/api/v1/namespaces/default/pods");
      assertEquals(seen.filter((r) => r.user === "system:node:edge-1" && r.authn === "cert").length, 5);
      assertEquals(seen.filter((r) => r.user === "reader" && r.authn === "token").length, 5);
    } finally {
      node.close();
      reader.close();
    }
  });

  await t.step("150 watches: 2 more cloud connections at most; events flow on them", async () => {
    const before = cluster.apiserver.connections().accepted;
    const w = await openWatches(lite, cluster, 150);
    try {
      const opened = cluster.apiserver.connections().accepted - before;
      assert(opened <= 2, `cloud connections opened for 150 watches of one identity: ${opened}`);
      addConfigMap(cluster, "h2-event", 149);
      assert(await w.watches[149].until((ev) => ev.some((e) => e.type === "ADDED"), "the ADDED event"));
    } finally {
      await w.close();
    }
    // The cloud saw every watch as the node, never as another identity.
    const watches = cluster.apiserver.requests.filter((r) => r.query.includes("watch=1"));
    assert(watches.every((r) => r.user === "system:node:edge-1"));
    // Open connections in all: the node's (at most 2) and the anonymous/token pool's.
    assert(cluster.apiserver.connections().open <= 4, `open: ${cluster.apiserver.connections().open}`);
  });
});

Deno.test("HTTP/2 cloud with --upstream-http2 off, and an HTTP/1.1-only cloud: one connection per watch", async () => {
  for (const [http2, flag] of [[{ maxStreams: 100 }, "off"], [false, "auto"]] as const) {
    await using cluster = await startCluster({ http2 });
    await using lite = await startLite(cluster, { extra: ["--upstream-http2", flag] });
    const before = cluster.apiserver.connections().accepted;
    const w = await openWatches(lite, cluster, 20);
    try {
      const opened = cluster.apiserver.connections().accepted - before;
      assert(opened >= 20, `cloud connections for 20 watches (${flag}, h2 cloud: ${!!http2}): ${opened}`);
      addConfigMap(cluster, "h1-event", 3);
      assert(await w.watches[3].until((ev) => ev.some((e) => e.type === "ADDED"), "the ADDED event"));
    } finally {
      await w.close();
    }
  }
});

Deno.test("HTTP/2 cloud: GOAWAY mid-watch and a lowered stream limit", async (t) => {
  await using cluster = await startCluster({ http2: { maxStreams: 100 } });
  await using lite = await startLite(cluster);
  const h2 = cluster.apiserver.h2!;
  await t.step("GOAWAY: the watch in flight goes on; the next request opens a new connection", async () => {
    const w = await openWatches(lite, cluster, 1);
    try {
      const before = cluster.apiserver.connections().accepted;
      h2.goaway();
      addConfigMap(cluster, "after-goaway", 0);
      assert(await w.watches[0].until((ev) => ev.some((e) => e.type === "ADDED"), "an event after GOAWAY"));
      const node = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
      try {
        assertEquals((await node.json("/api/v1/namespaces/default/pods")).status, 200);
      } finally {
        node.close();
      }
      assert(cluster.apiserver.connections().accepted > before, "a new connection after GOAWAY");
    } finally {
      await w.close();
    }
  });

  await t.step("the server lowers MAX_CONCURRENT_STREAMS to 2: 6 watches need 3 connections", async () => {
    // Connections made from now on announce 2; open ones are told so.
    h2.setMaxStreams(2);
    const before = cluster.apiserver.connections().accepted;
    const w = await openWatches(lite, cluster, 6);
    try {
      const opened = cluster.apiserver.connections().accepted - before;
      assert(opened >= 2 && opened <= 4, `connections for 6 watches at 2 streams each: ${opened}`);
      addConfigMap(cluster, "limit-event", 5);
      assert(await w.watches[5].until((ev) => ev.some((e) => e.type === "ADDED"), "the event on watch 6"));
    } finally {
      await w.close();
    }
  });
});

Deno.test("HTTP/2 cloud: a half-open connection (PING never answered) is declared dead; its watch takes the watch-cut path", async () => {
  await using cluster = await startCluster({ http2: { maxStreams: 100 } });
  await using lite = await startLite(cluster, {
    extra: ["--upstream-http2-read-idle", "300ms", "--upstream-http2-ping-timeout", "500ms"],
  });
  // A list first: the cache follows the watch, so a cut watch can be held and carried on.
  const node = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  const list = await node.json("/api/v1/namespaces/default/configmaps");
  node.close();
  const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
  const w = await openWatches(lite, cluster, 1, `&resourceVersion=${rv}`);
  try {
    const from = lite.lines.length;
    // The node's connection goes half-open; the anonymous health probes are still answered,
    // so only the PING can find it.
    cluster.apiserver.h2!.silenceCertConnections();
    await lite.waitForLine(/upstream watch cut/, 15_000, from);
    assert(!lite.lines.slice(from).some((l) => /upstream unreachable: offline/.test(l)), "still online");
  } finally {
    await w.close();
  }
});
