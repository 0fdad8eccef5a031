/**
 * End to end, online: the real lite-apiserver process between kubectl/curl-like clients and the
 * simulated apiserver. Identity pass-through, watches, upgrades, failover.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import tls from "node:tls";
import {
  type Cluster,
  httpsClient,
  kubectl,
  kubectlStream,
  readUntil,
  startCluster,
  startLite,
  within,
  writeKubeconfig,
} from "./support/harness.ts";

const strip0 = (s?: string) => (s ?? "").toUpperCase().replace(/^0+(?=.)/, "");
const names = (body: Record<string, unknown>) =>
  (body.items as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name).sort();

Deno.test("online proxying with the caller's own identity", async (t) => {
  const cluster: Cluster = await startCluster();
  const lite = await startLite(cluster);
  const node = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  try {
    await t.step(
      "kubectl with a client certificate lists pods; the apiserver saw the node and its cert",
      async () => {
        const kc = await writeKubeconfig(
          cluster.dir,
          "kubelet",
          lite.url,
          cluster.pki.caCert,
          cluster.kubelet,
        );
        for (const v of ["1.27", "1.33"]) {
          const from = cluster.apiserver.requests.length;
          const r = await kubectl(v, kc, ["get", "pods", "-A", "-o", "name"]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stdout, /pod\/nginx-1/);
          const seen = cluster.apiserver.requests.slice(from).filter((x) => x.path === "/api/v1/pods");
          assert(seen.length > 0, "apiserver saw the list");
          for (const x of seen) {
            assertEquals(x.user, "system:node:edge-1");
            assertEquals(x.authn, "cert");
            assertEquals(strip0(x.certSerial), strip0(cluster.kubelet.serial));
          }
        }
      },
    );

    await t.step("a bearer token passes through unchanged and without a client certificate", async () => {
      const reader = httpsClient(lite.url, cluster.pki.caPem, { token: "reader-token" });
      try {
        const pods = await reader.json("/api/v1/namespaces/default/pods");
        assertEquals(pods.status, 200);
        const rec = cluster.apiserver.requests.findLast((x) => x.path === "/api/v1/namespaces/default/pods")!;
        assertEquals(rec.user, "reader");
        assertEquals(rec.authn, "token");
        assertEquals(rec.certSerial, undefined);
        const secret = await reader.json("/api/v1/namespaces/default/secrets/db-password");
        assertEquals(secret.status, 403, "the upstream's own authorizer answers");
        assertEquals(secret.body.reason, "Forbidden");
      } finally {
        reader.close();
      }
    });

    await t.step("a rogue self-signed certificate with CN=admin is never forwarded as admin", async () => {
      const rogue = await cluster.pki.rogue("admin", ["system:masters"]);
      const c = httpsClient(lite.url, cluster.pki.caPem, { pair: rogue });
      try {
        const r = await c.json("/api/v1/namespaces/default/secrets");
        assertEquals(r.status, 403);
        const rec = cluster.apiserver.requests.findLast((x) =>
          x.path === "/api/v1/namespaces/default/secrets"
        )!;
        assertEquals(rec.user, "system:anonymous");
        assertEquals(rec.certSerial, undefined);
        await lite.waitForLine(/client certificate did not verify.*cn=admin/);
      } finally {
        c.close();
      }
    });

    await t.step(
      "a verified certificate with no configured pair goes upstream without credentials",
      async () => {
        const other = await cluster.pki.client("someone", ["devs"]);
        const c = httpsClient(lite.url, cluster.pki.caPem, { pair: other });
        try {
          const r = await c.json("/api/v1/namespaces/default/configmaps");
          assertEquals(r.status, 403);
          const rec = cluster.apiserver.requests.findLast((x) =>
            x.path === "/api/v1/namespaces/default/configmaps"
          )!;
          assertEquals(rec.user, "system:anonymous");
        } finally {
          c.close();
        }
      },
    );

    await t.step("kubectl get -w through the proxy sees an object created afterwards", async () => {
      const kc = await writeKubeconfig(
        cluster.dir,
        "kubelet-w",
        lite.url,
        cluster.pki.caCert,
        cluster.kubelet,
      );
      const child = kubectlStream("1.33", kc, ["get", "configmaps", "-w", "-o", "name"]);
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      const until = async (re: RegExp) => {
        seen = await readUntil(reader, (s) => re.test(s), `kubectl get -w to print ${re}`, 20_000, seen);
      };
      try {
        await until(/configmap\//); // the initial list arrived, so the watch is open
        cluster.apiserver.create({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "created-later", namespace: "default" },
          data: { a: "b" },
        });
        await until(/configmap\/created-later/);
      } finally {
        child.kill();
        await reader.cancel().catch(() => {});
        await child.stderr.cancel().catch(() => {});
        await within(child.status, "kubectl to exit after SIGTERM");
      }
    });

    await t.step("a JSON watch is streamed event by event", async () => {
      const res = await node.request("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0");
      assertEquals(res.status, 200);
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      try {
        const buf = await readUntil(reader, (s) => s.includes("created-later"), "the existing configmaps");
        cluster.apiserver.create({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "streamed", namespace: "default" },
        });
        await readUntil(
          reader,
          (s) => /"ADDED".*"streamed"/.test(s),
          "the ADDED event of 'streamed'",
          15_000,
          buf,
        );
      } finally {
        await reader.cancel();
      }
    });

    await t.step("a request without an Accept header works", async () => {
      const res = await node.request("/api/v1/nodes/edge-1", { headers: { accept: "" } });
      assertEquals(res.status, 200);
      assertEquals((await res.json()).metadata.name, "edge-1");
    });

    await t.step("writes pass through with status and body preserved", async () => {
      const admin = httpsClient(lite.url, cluster.pki.caPem, { token: "admin-token" });
      try {
        const body = JSON.stringify({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "w1", namespace: "default" },
        });
        const created = await admin.json("/api/v1/namespaces/default/configmaps", {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
        });
        assertEquals(created.status, 201);
        const again = await admin.json("/api/v1/namespaces/default/configmaps", {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
        });
        assertEquals(again.status, 409);
        assertEquals(again.body.reason, "AlreadyExists");
      } finally {
        admin.close();
      }
    });

    await t.step("exec-style upgrades are tunnelled byte for byte with the caller's identity", async () => {
      const sock = tls.connect({
        host: "127.0.0.1",
        port: lite.port,
        ca: cluster.pki.caPem,
        cert: cluster.kubelet.certPem,
        key: cluster.kubelet.keyPem,
        servername: "localhost",
      });
      await within(
        new Promise<void>((r, j) => sock.once("secureConnect", () => r()).once("error", j)),
        "the TLS handshake with lite-apiserver",
      );
      sock.write(
        "POST /api/v1/namespaces/default/pods/nginx-1/exec?command=sh&stdin=true HTTP/1.1\r\nHost: x\r\n" +
          "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
      );
      let got = "";
      const dataArrived = (re: RegExp) =>
        within(
          new Promise<void>((resolve, reject) => {
            const on = (d: Uint8Array) => {
              got += new TextDecoder().decode(d);
              if (re.test(got)) {
                sock.off("data", on);
                resolve();
              }
            };
            sock.on("data", on);
            sock.once("close", () => reject(new Error(`closed: ${got}`)));
          }),
          `tunnelled bytes matching ${re}`,
        );
      await dataArrived(/\r\n\r\n/);
      assertMatch(got, /^HTTP\/1\.1 101/);
      const payload = "\x00\x01binary\xffpayload";
      sock.write(payload);
      await dataArrived(/payload$/);
      assert(got.endsWith("\x00\x01binary\xffpayload"), "echoed byte for byte");
      const rec = cluster.apiserver.requests.findLast((x) => x.path.endsWith("/exec"))!;
      assertEquals(rec.user, "system:node:edge-1");
      assertEquals(rec.status, 101);
      sock.destroy();
    });
  } finally {
    node.close();
    await lite.kill();
    await cluster.close();
  }
});

Deno.test("with several upstream URLs, one request sent while the first refuses is answered by the second", async () => {
  await using cluster = await startCluster();
  // The first endpoint: a TCP forwarder to the apiserver that can be made to refuse at will.
  const net = await import("node:net");
  const upstreamPort = cluster.apiserver.port;
  const sockets = new Set<import("node:net").Socket>();
  let forwarded = 0;
  const first = net.createServer((client) => {
    forwarded++;
    const up = net.connect(upstreamPort, "127.0.0.1");
    for (const s of [client, up]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => (client.destroy(), up.destroy()));
    }
    client.pipe(up).pipe(client);
  });
  await new Promise<void>((r) => first.listen(0, "127.0.0.1", () => r()));
  const firstUrl = `https://127.0.0.1:${(first.address() as import("node:net").AddressInfo).port}`;
  // Probes an hour apart: only the proxy's own failover can move this request to the second endpoint.
  await using lite = await startLite(cluster, {
    upstream: `${firstUrl},${cluster.apiserver.url}`,
    extra: ["--health-check-interval", "1h"],
  });
  const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  try {
    assertEquals((await c.json("/api/v1/nodes/edge-1")).status, 200);
    assert(forwarded > 0, "the first endpoint served while it was up");
    // The first endpoint now refuses: its listener is closed and its connections are cut.
    await new Promise((r) => first.close(r));
    for (const s of sockets) s.destroy();
    const from = cluster.apiserver.requests.length;
    const r = await c.json("/api/v1/namespaces/default/pods");
    assertEquals(r.status, 200, JSON.stringify(r.body));
    assertEquals(r.headers.get("x-lite-apiserver-source"), null, "answered upstream, not from the cache");
    assertEquals(names(r.body), ["nginx-1", "nginx-2", "redis-0"]);
    const seen = cluster.apiserver.requests.slice(from).filter((x) =>
      x.path === "/api/v1/namespaces/default/pods"
    );
    assertEquals(
      seen.map((x) => [x.user, x.status]),
      [["system:node:edge-1", 200]],
      "one request, via the second",
    );
    assertEquals(lite.lines.some((x) => /upstream unreachable: offline/.test(x)), false, "stayed online");
  } finally {
    c.close();
    for (const s of sockets) s.destroy();
    first.close();
  }
});

Deno.test("HTTPS_PROXY is honoured for the upstream, and NO_PROXY bypasses it", async () => {
  await using cluster = await startCluster();
  // A minimal CONNECT proxy that records its tunnels.
  const tunnels: string[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const net = await import("node:net");
  const proxy = net.createServer((client) => {
    sockets.add(client);
    client.once("data", (head: Uint8Array) => {
      const m = /^CONNECT (\S+):(\d+) HTTP\/1\.1/.exec(new TextDecoder().decode(head));
      if (!m) return client.destroy();
      tunnels.push(`${m[1]}:${m[2]}`);
      const upstream = net.connect(Number(m[2]), m[1], () => {
        client.write("HTTP/1.1 200 Connection established\r\n\r\n");
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", () => r()));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as import("node:net").AddressInfo).port}`;
  const upstreamHostPort = new URL(cluster.apiserver.url).host;
  try {
    const viaProxy = await startLite(cluster, { env: { HTTPS_PROXY: proxyUrl, NO_PROXY: "" } });
    const c = httpsClient(viaProxy.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      const r = await c.json("/api/v1/nodes/edge-1");
      assertEquals(r.status, 200);
      assert(tunnels.includes(upstreamHostPort), `tunnelled: ${tunnels}`);
      const rec = cluster.apiserver.requests.findLast((x) => x.path === "/api/v1/nodes/edge-1")!;
      assertEquals(rec.user, "system:node:edge-1", "the client certificate is presented through the tunnel");
    } finally {
      c.close();
      await viaProxy.kill();
    }
    tunnels.length = 0;
    const bypass = await startLite(cluster, {
      env: { HTTPS_PROXY: proxyUrl, NO_PROXY: "localhost,127.0.0.1" },
    });
    const c2 = httpsClient(bypass.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      assertEquals((await c2.json("/api/v1/nodes/edge-1")).status, 200);
      assertEquals(tunnels, [], "NO_PROXY bypasses the proxy");
    } finally {
      c2.close();
      await bypass.kill();
    }
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => proxy.close(r));
  }
});

Deno.test("a slow but healthy upstream: waited for when nothing is cached, the cache answers when it can", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster); // --backend-timeout 1s
  const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  try {
    const path = "/api/v1/namespaces/default/configmaps";
    const upstreamSaw = (from: number) =>
      cluster.apiserver.requests.slice(from).filter((r) => r.path === path);
    // Slower than --backend-timeout (1s): with nothing cached, the proxy must wait for the answer.
    cluster.apiserver.setDelay(/^\/api\/v1\/namespaces\/default\/configmaps$/, 2500);
    let from = cluster.apiserver.requests.length;
    const first = await c.json(path);
    assertEquals(first.status, 200, "not a 503: nothing was cached, so the proxy waited");
    assertEquals(first.headers.get("x-lite-apiserver-source"), null);
    assertEquals(upstreamSaw(from).map((r) => r.status), [200], "the upstream's own (slow) answer");

    // Now far slower: the cached answer comes at the backend timeout, while the upstream still works on it.
    cluster.apiserver.setDelay(/^\/api\/v1\/namespaces\/default\/configmaps$/, 30_000);
    from = cluster.apiserver.requests.length;
    const second = await c.json(path);
    assertEquals([second.status, second.headers.get("x-lite-apiserver-source")], [200, "cache"]);
    // Never answered by the upstream. (A GET that fails before any answer byte may be sent once more on a
    // fresh connection, the keep-alive race of HTTP/1.1 and a refused stream of HTTP/2: seen once over h2.)
    const saw = upstreamSaw(from).map((r) => r.status);
    assert(
      saw.length >= 1 && saw.length <= 2 && saw.every((s) => s === 0),
      `the upstream had not answered yet: ${saw}`,
    );
    assertEquals(
      lite.lines.some((l) => /upstream unreachable: offline/.test(l)),
      false,
      "slow is not offline",
    );
  } finally {
    cluster.apiserver.setDelay(undefined);
    c.close();
  }
});

Deno.test("SIGTERM stops promptly with open watches and keep-alive connections", async () => {
  await using cluster = await startCluster();
  const lite = await startLite(cluster);
  const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  try {
    assertEquals((await c.json("/api/v1/nodes/edge-1")).status, 200); // a keep-alive connection stays open
    const watch = await c.request("/api/v1/namespaces/default/pods?watch=1");
    assertEquals(watch.status, 200);
    // And a write still waiting for its answer (the apiserver takes 30 s; the write timeout is 60 s).
    cluster.apiserver.setDelay(/\/configmaps$/, 30_000);
    const admin = httpsClient(lite.url, cluster.pki.caPem, { token: "admin-token" });
    const stuck = admin.request("/api/v1/namespaces/default/configmaps", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "stuck" } }),
    }).catch(() => undefined);
    await cluster.apiserver.waitForRequest((r) => r.method === "POST" && r.path.endsWith("/configmaps"));
    const from = lite.lines.length;
    const started = performance.now();
    lite.child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      lite.status,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), 20_000)),
    ]);
    clearTimeout(timer);
    assert(status, "exited within 20 s");
    assertEquals(status.code, 0);
    assert(lite.lines.slice(from).some((l) => /shutting down.*SIGTERM/.test(l)));
    console.log(`SIGTERM → exit: ${(performance.now() - started).toFixed(0)} ms`);
    await watch.body?.cancel().catch(() => {});
    await stuck;
    admin.close();
  } finally {
    cluster.apiserver.setDelay(undefined);
    c.close();
    await lite.kill("SIGKILL");
  }
});
