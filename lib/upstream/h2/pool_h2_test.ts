/**
 * The pool's HTTP/2 path against a real HTTP/2 server (nginx in front of the simulated apiserver,
 * tests/support/apiserver/h2_front.ts): streams share one connection per pool, a second opens only
 * at the announced stream limit, retirement (a rotated certificate) lets in-flight streams finish
 * while new ones go on a new connection, upgrades stay HTTP/1.1, and `http2: "off"` is HTTP/1.1.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { TLSSocket } from "node:tls";
import { UpstreamPool } from "../pool.ts";
import { endpointOf } from "../endpoint.ts";
import { makeDial } from "../https_proxy.ts";
import type { UpstreamResponse } from "../response.ts";
import { startCluster } from "../../../tests/support/harness.ts";
import { eventually, within } from "../../../tests/support/harness.ts";

function body(res: UpstreamResponse): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      let s = "";
      res.on("data", (c: Uint8Array) => (s += new TextDecoder().decode(c)));
      res.on("end", () => resolve(s));
      res.on("aborted", () => reject(new Error("aborted")));
    }),
    "the whole body",
  );
}

async function withCloud(
  maxStreams: number,
  fn: (
    pool: UpstreamPool,
    get: (path: string) => Promise<UpstreamResponse>,
    dialed: TLSSocket[],
    ctx: { url: string; caPem: string; cert: string; key: string },
  ) => Promise<void>,
  http2: "auto" | "off" = "auto",
) {
  const cluster = await startCluster({ http2: { maxStreams } });
  const dialed: TLSSocket[] = [];
  const dial = makeDial();
  const pool = new UpstreamPool({
    ca: cluster.pki.caPem,
    cert: cluster.kubelet.certPem,
    key: cluster.kubelet.keyPem,
    http2,
    dial: (o) => {
      const d = dial(o);
      d.ready.then((s) => dialed.push(s), () => {});
      return d;
    },
  });
  const ep = endpointOf(cluster.apiserver.url);
  const get = (path: string) =>
    within(pool.request(ep, { method: "GET", path, headers: { host: ep.host } }).response, `GET ${path}`);
  try {
    await fn(pool, get, dialed, {
      url: cluster.apiserver.url,
      caPem: cluster.pki.caPem,
      cert: cluster.kubelet.certPem,
      key: cluster.kubelet.keyPem,
    });
  } finally {
    pool.destroy();
    await cluster.close();
  }
}

Deno.test("h2 pool: concurrent requests are streams on one connection; the stream limit opens a second", async () => {
  await withCloud(3, async (pool, get, dialed) => {
    const answers = await Promise.all(
      Array.from({ length: 3 }, () => get("/api/v1/namespaces/default/pods")),
    );
    assertEquals(answers.map((r) => r.statusCode), [200, 200, 200]);
    for (const r of answers) JSON.parse(await body(r));
    assertEquals(dialed.length, 1);
    assertEquals(dialed[0].alpnProtocol, "h2");
    // Four watches held open: three streams fill the first connection, the fourth needs another.
    const watches = await Promise.all(
      Array.from(
        { length: 4 },
        (_, i) => get(`/api/v1/namespaces/default/configmaps?watch=1&labelSelector=x%3D${i}`),
      ),
    );
    assertEquals(watches.map((w) => w.statusCode), [200, 200, 200, 200]);
    assertEquals(pool.h2Connections, 2);
    assertEquals(dialed.length, 2);
    for (const w of watches) w.destroy();
  });
});

Deno.test("h2 pool: retire sends GOAWAY; a watch in flight goes on, new requests take a new connection", async () => {
  await withCloud(100, async (pool, get, dialed) => {
    const watch = await get("/api/v1/namespaces/default/configmaps?watch=1");
    assertEquals(watch.statusCode, 200);
    let aborted = false;
    watch.on("aborted", () => (aborted = true));
    watch.resume();
    pool.retire();
    const after = await get("/api/v1/namespaces/default/pods");
    assertEquals(after.statusCode, 200);
    await body(after);
    assertEquals(dialed.length, 2, "a new connection for the request after retirement");
    assert(!aborted && !dialed[0].destroyed, "the in-flight watch's connection is still open");
    watch.destroy();
    await eventually(() => dialed[0].destroyed, "the retired connection closing once its stream ended");
  });
});

Deno.test("h2 pool: upgrades stay HTTP/1.1; http2 off never offers h2", async () => {
  await withCloud(100, async (pool, _get, dialed, ctx) => {
    const ep = endpointOf(ctx.url);
    const up = pool.upgrade(ep, {
      method: "GET",
      path: "/api/v1/namespaces/default/pods/nginx-1/exec?command=sh",
      headers: {
        host: ep.host,
        connection: "Upgrade",
        upgrade: "SPDY/3.1",
        "x-stream-protocol-version": "v4.channel.k8s.io",
      },
    });
    const r = await within(up.result, "the upgrade");
    assertEquals(r.kind, "upgraded");
    assertEquals(dialed.at(-1)!.alpnProtocol, "http/1.1");
    if (r.kind === "upgraded") r.socket.destroy();
  });
  await withCloud(100, async (_pool, get, dialed) => {
    const r = await get("/api/v1/namespaces/default/pods");
    await body(r);
    assertEquals(dialed[0].alpnProtocol, "http/1.1");
  }, "off");
});

Deno.test("h2 pool against nginx (an independent HTTP/2 server): a token's GETs and a POST body share one connection", async () => {
  const cluster = await startCluster({ http2: { maxStreams: 100, impl: "nginx" } });
  const dialed: TLSSocket[] = [];
  const dial = makeDial();
  const pool = new UpstreamPool({
    ca: cluster.pki.caPem,
    http2: "auto",
    dial: (o) => {
      const d = dial(o);
      d.ready.then((s) => dialed.push(s), () => {});
      return d;
    },
  });
  const ep = endpointOf(cluster.apiserver.url);
  try {
    const gets = await Promise.all(Array.from({ length: 20 }, () =>
      within(
        pool.request(ep, {
          method: "GET",
          path: "/api/v1/namespaces/default/pods",
          headers: { host: ep.host, authorization: "Bearer admin-token" },
        })
          .response,
        "GET",
      )));
    for (const r of gets) {
      const b = await body(r);
      assertEquals(JSON.parse(b).kind, "PodList", b.slice(0, 300));
    }
    const cm = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "via-nginx" },
      data: { k: "v".repeat(100_000) },
    };
    const post = await within(
      pool.request(ep, {
        method: "POST",
        path: "/api/v1/namespaces/default/configmaps",
        headers: { host: ep.host, "content-type": "application/json", authorization: "Bearer admin-token" },
        body: new TextEncoder().encode(JSON.stringify(cm)),
      }).response,
      "POST",
    );
    assertEquals(post.statusCode, 201);
    await body(post);
    assertEquals(
      (cluster.apiserver.get("v1", "ConfigMap", "default", "via-nginx") as typeof cm).data.k.length,
      100_000,
    );
    assertEquals(dialed.length, 1);
    assertEquals(dialed[0].alpnProtocol, "h2");
    const seen = cluster.apiserver.requests.filter((r) => r.path === "/api/v1/namespaces/default/pods");
    assertEquals(seen.length, 20);
    assert(
      seen.every((r) => r.user === "admin" && r.authn === "token"),
      "every GET reached the apiserver as the token's user",
    );
  } finally {
    pool.destroy();
    await cluster.close();
  }
});
