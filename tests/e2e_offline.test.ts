/**
 * Edge autonomy, end to end, for each cache backend: prime through the real process with kubectl
 * and an HTTPS client, cut the simulated cloud (blackhole and refuse), read back from the cache,
 * kill -9 and restart while offline, check isolation between identities, and recover.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import {
  eventually,
  type HttpsClient,
  httpsClient,
  kubectl,
  type LiteProcess,
  readToEnd,
  readUntil,
  startCluster,
  startLite,
  WatchStream,
  within,
  writeKubeconfig,
} from "./support/harness.ts";

const PROTOBUF_FIRST = "application/vnd.kubernetes.protobuf, application/json";
const TOKEN_PATH = "/api/v1/namespaces/default/serviceaccounts/default/token";
const TOKEN_BODY = JSON.stringify({
  apiVersion: "authentication.k8s.io/v1",
  kind: "TokenRequest",
  spec: { audiences: ["https://kubernetes.default.svc"], expirationSeconds: 3600 },
});

type Obj = Record<string, unknown> & {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
};
/** POSTs a ConfigMap named `name` in default. */
const createConfigMap = (c: HttpsClient, name: string) =>
  c.json("/api/v1/namespaces/default/configmaps", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name } }),
  });
const names = (body: Record<string, unknown>) => (body.items as Obj[]).map((i) => i.metadata.name).sort();

type Ev = { type: string; object: Obj };

for (const backend of ["sqlite", "file"] as const) {
  Deno.test(`edge autonomy with the ${backend} cache`, async (t) => {
    const cluster = await startCluster();
    let lite: LiteProcess & { cacheDir: string } = await startLite(cluster, { backend });
    const cacheDir = lite.cacheDir;
    let kc = await writeKubeconfig(
      cluster.dir,
      `kubelet-${backend}`,
      lite.url,
      cluster.pki.caCert,
      cluster.kubelet,
    );
    const clients: Array<{ close(): void }> = [];
    const client = (who: Parameters<typeof httpsClient>[2]) => {
      const c = httpsClient(lite.url, cluster.pki.caPem, who);
      clients.push(c);
      return c;
    };
    const offlineSince = (proc: LiteProcess, from = 0) =>
      proc.waitForLine(/upstream unreachable: offline/, 30_000, from);
    try {
      // The steps form one scenario and hand state on: the kubelet's client (`n`, new after the
      // restart), what priming learnt (`podsRv`, `issuedToken`) and the cloud's fault (`cloud`:
      // cut by "refuse" from the second cut step until the last step reconnects it). Each step
      // states what it needs from the earlier ones with `need`, so a step run out of order fails
      // saying which precondition is missing rather than with a confusing answer.
      let n = client({ pair: cluster.kubelet });
      const reader = client({ token: "reader-token" });
      let podsRv = "";
      let issuedToken = "";
      let cloud: "up" | "refused" = "up";
      const need = (what: string, holds: boolean) => assert(holds, `precondition not met: ${what}`);
      const needPrimed = () => need("the cache was primed online (podsRv)", podsRv !== "");
      const needOffline = () => {
        needPrimed();
        need("the cloud is cut (refuse) and the proxy went offline", cloud === "refused");
      };

      await t.step("prime the cache online", async () => {
        for (
          const args of [
            ["get", "pods", "-A"],
            ["get", "pods", "-n", "default", "-l", "app=nginx"],
            ["get", "pods", "-A", "--field-selector", "spec.nodeName=edge-1"],
            ["get", "widgets", "-n", "default"],
            ["api-resources"],
          ]
        ) {
          const r = await kubectl("1.33", kc, args);
          assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        }
        const list = await n.json("/api/v1/namespaces/default/pods");
        assertEquals(list.status, 200);
        podsRv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
        assertEquals((await n.json("/api/v1/nodes/edge-1")).status, 200);
        assertEquals((await n.json("/api/v1/namespaces/default/secrets/db-password")).status, 200);
        assertEquals((await n.json("/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1")).status, 200);
        assertEquals((await reader.json("/api/v1/namespaces/default/pods")).status, 200);
        // kubelet and kube-proxy prefer protobuf: JSON is negotiated for what the cache must read.
        const proto = await n.json("/api/v1/namespaces/kube-system/pods", {
          headers: { accept: PROTOBUF_FIRST },
        });
        assertEquals([proto.status, proto.headers.get("content-type")], [200, "application/json"]);
        const token = await n.json(TOKEN_PATH, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: TOKEN_BODY,
        });
        assertEquals(token.status, 201);
        issuedToken = String((token.body.status as { token: string }).token);
      });

      await t.step("a change delivered by a watch before the cut is in the cache", async () => {
        needPrimed();
        const res = await n.request(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${podsRv}`);
        assertEquals(res.status, 200);
        const pod = cluster.apiserver.get("v1", "Pod", "default", "nginx-1")! as Obj;
        pod.metadata.labels = { ...pod.metadata.labels, changed: "by-watch" };
        cluster.apiserver.update(pod);
        const w = new WatchStream<Ev>(res.body!);
        assert(
          await w.until(
            (evs) => evs.some((e) => e.type === "MODIFIED" && e.object.metadata.name === "nginx-1"),
            "the MODIFIED event of nginx-1",
          ),
          "the watch ended before the MODIFIED event",
        );
        await w.cancel();
      });

      for (const mode of ["blackhole", "refuse"] as const) {
        await t.step(`cut (${mode}): a read sent into the cut is answered from the cache`, async () => {
          needPrimed();
          const from = lite.lines.length;
          // A watch open across the cut is held from the cache (BOOKMARKs, as it asked), not ended.
          const open = await n.request(
            `/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&resourceVersion=${podsRv}`,
          );
          assertEquals(open.status, 200);
          const openReader = open.body!.pipeThrough(new TextDecoderStream()).getReader();
          await cluster.apiserver.setFault(mode);
          if (mode === "refuse") cloud = "refused";
          // One read sent into the cut, no retry: the cache answers it at the backend timeout at the
          // latest (a blackholed upstream never would). The time it takes is measured in bench/.
          const first = await within(
            n.json("/api/v1/namespaces/default/pods"),
            "a read sent into the cut",
            20_000,
          );
          assertEquals([first.status, first.headers.get("x-lite-apiserver-source")], [200, "cache"]);
          assertEquals(names(first.body), ["nginx-1", "nginx-2", "redis-0"]);
          await offlineSince(lite, from);
          await readUntil(
            openReader,
            (text) => text.includes('"type":"BOOKMARK"'),
            "a BOOKMARK on the watch held across the cut",
            20_000,
          );
          await openReader.cancel();
          if (mode === "blackhole") {
            await cluster.apiserver.setFault("none");
            await lite.waitForLine(/upstream reachable again/, 15_000, from);
          }
        });
      }

      await t.step("offline: every primed read is served from the cache", async () => {
        needOffline();
        const list = await n.json("/api/v1/namespaces/default/pods");
        const changed = (list.body.items as Obj[]).find((p) => p.metadata.name === "nginx-1")!;
        assertEquals(
          changed.metadata.labels?.changed,
          "by-watch",
          "the watch-delivered change shows offline",
        );
        const nodeObj = await n.json("/api/v1/nodes/edge-1");
        assertEquals([nodeObj.status, (nodeObj.body.metadata as Obj["metadata"]).name], [200, "edge-1"]);
        const secret = await n.json("/api/v1/namespaces/default/secrets/db-password");
        assertEquals(secret.status, 200);
        const mine = await n.json("/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1");
        assert((mine.body.items as Obj[]).length >= 5);

        for (
          const [args, re] of [
            [["get", "pods", "-A"], /kube-proxy-edge-1/],
            [["get", "pods", "-n", "default", "-l", "app=nginx"], /nginx-2/],
            [["get", "pods", "-A", "--field-selector", "spec.nodeName=edge-1"], /coredns/],
            [["get", "widgets", "-n", "default"], /w1/],
            [["api-resources"], /widgets/],
          ] as Array<[string[], RegExp]>
        ) {
          const r = await kubectl("1.33", kc, args);
          assertEquals(r.code, 0, `${args.join(" ")} offline: ${r.stderr}`);
          assertMatch(r.stdout, re);
        }
      });

      await t.step("offline: selectors and paging are applied to a broader cached list", async () => {
        needOffline();
        const redis = await n.json("/api/v1/namespaces/default/pods?labelSelector=app%3Dredis");
        assertEquals(redis.status, 200);
        assertEquals(names(redis.body), ["redis-0"]);
        const notNginx = await n.json("/api/v1/namespaces/default/pods?labelSelector=app+notin+(nginx)");
        assertEquals(names(notNginx.body), ["redis-0"]);
        const byName = await n.json("/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dnginx-2");
        assertEquals(names(byName.body), ["nginx-2"]);
        const seen: string[] = [];
        let cont = "";
        do {
          const page = await n.json(
            `/api/v1/namespaces/default/pods?limit=1${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
          );
          assertEquals(page.status, 200);
          seen.push(...names(page.body));
          cont = String((page.body.metadata as { continue?: string }).continue ?? "");
        } while (cont);
        assertEquals(seen, ["nginx-1", "nginx-2", "redis-0"]);
        const bad = await n.json("/api/v1/namespaces/default/pods?labelSelector=a+in+(");
        assertEquals(bad.status, 400);
      });

      await t.step(
        "offline: protobuf-preferring clients get JSON, and a still-valid token is handed out again",
        async () => {
          needOffline();
          need("a token was issued while online", issuedToken !== "");
          const proto = await n.json("/api/v1/namespaces/kube-system/pods", {
            headers: { accept: PROTOBUF_FIRST },
          });
          assertEquals([proto.status, proto.headers.get("content-type")], [200, "application/json"]);
          assert((proto.body.items as Obj[]).length > 0);
          const again = await n.json(TOKEN_PATH, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: TOKEN_BODY,
          });
          assertEquals(again.status, 201);
          assertEquals(
            (again.body.status as { token: string }).token,
            issuedToken,
            "the cloud-issued token, not a minted one",
          );
          const otherBody = TOKEN_BODY.replace("3600", "7200");
          const other = await n.json(TOKEN_PATH, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: otherBody,
          });
          assertEquals(other.status, 503, "a different request gets no token");
          const asReader = await reader.json(TOKEN_PATH, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: TOKEN_BODY,
          });
          assertEquals(asReader.status, 503, "another identity gets no token");
        },
      );

      await t.step("offline: a miss is an honest 503, and writes fail fast with a Status", async () => {
        needOffline();
        const missing = await n.json("/api/v1/namespaces/kube-system/configmaps");
        assertEquals([missing.status, missing.body.kind, missing.body.reason], [
          503,
          "Status",
          "ServiceUnavailable",
        ]);
        assertMatch(String(missing.body.message), /unreachable.*nothing is cached/);
        const write = await within(
          createConfigMap(n, "x"),
          "the offline write's answer",
        );
        assertEquals([write.status, write.body.kind], [503, "Status"]);
        assertMatch(String(write.body.message), /writes cannot be applied while offline/);
        // kubelet re-registering its Node after an offline reboot gets AlreadyExists, as from the cloud.
        const reg = await n.json("/api/v1/nodes", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "edge-1" } }),
        });
        assertEquals([reg.status, reg.body.reason], [409, "AlreadyExists"]);
        const unknown = await n.json("/api/v1/nodes", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "edge-9" } }),
        });
        assertEquals(unknown.status, 503);
      });

      await t.step("offline: one identity never reads another's cache", async () => {
        needOffline();
        const own = await reader.json("/api/v1/namespaces/default/pods");
        assertEquals(own.status, 200, "the token user's own cached list");
        const secret = await reader.json("/api/v1/namespaces/default/secrets/db-password");
        assertEquals(secret.status, 503, "the node's cached secret is not served to the token user");
        assertEquals(secret.body.kind, "Status");
        const real = cluster.apiserver.get("v1", "Secret", "default", "db-password") as {
          data: Record<string, string>;
        };
        for (const v of Object.values(real.data)) {
          assert(!JSON.stringify(secret.body).includes(v), "no secret bytes");
        }
        const rogue = client({ pair: await cluster.pki.rogue("system:node:edge-1", ["system:nodes"]) });
        const stolen = await rogue.json("/api/v1/namespaces/default/secrets/db-password");
        assertEquals(stolen.status, 503, "a rogue certificate claiming the node's CN gets nothing");
        const anon = await rogue.json("/api/v1/namespaces/default/pods");
        assertEquals(anon.status, 503);
      });

      await t.step("offline: watches are held open, with bookmarks and initial events", async () => {
        needOffline();
        const list = await n.json("/api/v1/namespaces/default/pods");
        const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
        const res = await n.request(
          `/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&resourceVersion=${rv}`,
        );
        assertEquals(res.status, 200);
        const held = new WatchStream<Ev>(res.body!);
        assertEquals(
          await held.until((evs) => evs.some((e) => e.type === "BOOKMARK"), "a BOOKMARK offline"),
          true,
        );
        assertEquals(held.events.filter((e) => e.type !== "BOOKMARK"), []);
        await held.cancel();

        const init = await n.request(
          "/api/v1/namespaces/default/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        );
        const got = new WatchStream<Ev>(init.body!);
        await got.until(
          (evs) => evs.some((e) => e.type === "BOOKMARK"),
          "cached items as ADDED, then the initial-events-end BOOKMARK",
        );
        assertEquals(got.events.filter((e) => e.type === "ADDED").map((e) => e.object.metadata.name).sort(), [
          "nginx-1",
          "nginx-2",
          "redis-0",
        ]);
        const bm = got.events.find((e) => e.type === "BOOKMARK")!;
        assertEquals(
          (bm.object.metadata as unknown as { annotations: Record<string, string> })
            .annotations["k8s.io/initial-events-end"],
          "true",
        );
        await got.cancel();

        const timed = await n.request(
          `/api/v1/namespaces/default/pods?watch=1&resourceVersion=${rv}&timeoutSeconds=1`,
        );
        await readToEnd(
          timed.body!.pipeThrough(new TextDecoderStream()).getReader(),
          "the held watch to end at timeoutSeconds=1",
        );
      });

      await t.step("kill -9 while offline, restart on the same cache, read again", async () => {
        needOffline();
        for (const c of clients.splice(0)) c.close();
        await lite.kill("SIGKILL");
        lite = await startLite(cluster, { backend, cacheDir });
        kc = await writeKubeconfig(
          cluster.dir,
          `kubelet-${backend}-2`,
          lite.url,
          cluster.pki.caCert,
          cluster.kubelet,
        );
        n = client({ pair: cluster.kubelet });
        const list = await eventually(async () => {
          const r = await n.json("/api/v1/namespaces/default/pods");
          return r.status === 200 ? r : undefined;
        }, "a cached list after the restart");
        assertEquals(names(list.body), ["nginx-1", "nginx-2", "redis-0"]);
        assertEquals((await n.json("/api/v1/nodes/edge-1")).status, 200);
        const r = await kubectl("1.27", kc, ["get", "pods", "-A"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /sensor-reader/);
      });

      await t.step("cache files are private (0600 files, 0700 directories)", async () => {
        need("the cache was written (primed online)", podsRv !== "");
        const walk = async (dir: string) => {
          for await (const e of Deno.readDir(dir)) {
            const p = `${dir}/${e.name}`;
            const mode = (await Deno.lstat(p)).mode! & 0o777;
            if (e.isDirectory) {
              assertEquals(mode.toString(8), "700", p);
              await walk(p);
            } else if (e.isFile) assertEquals(mode.toString(8), "600", p);
          }
        };
        await walk(cacheDir);
      });

      await t.step(
        "recovery: held watches resume from the cloud and a change made during the outage is seen",
        async () => {
          needOffline();
          await offlineSince(lite);
          const list = await n.json("/api/v1/namespaces/default/pods");
          const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
          const res = await n.request(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${rv}`);
          assertEquals(res.headers.get("x-lite-apiserver-source"), "cache");
          const watchReader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
          cluster.apiserver.create({
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "made-in-outage", namespace: "default", labels: { app: "new" } },
            spec: { nodeName: "edge-1", containers: [{ name: "c", image: "busybox" }] },
          });
          await cluster.apiserver.setFault("none");
          cloud = "up";
          // The held watch is resumed from the cloud: the outage's change arrives on the same stream.
          await readUntil(
            watchReader,
            (text) => text.includes('"name":"made-in-outage"'),
            "the outage's change on the resumed watch",
          );
          await watchReader.cancel();
          // Resumed because the proxy is online again: the very next read goes to the cloud.
          // (How long convergence takes is measured in bench/.)
          const fresh = await n.json("/api/v1/namespaces/default/pods");
          assertEquals(fresh.headers.get("x-lite-apiserver-source"), null, "answered by the cloud");
          assert(names(fresh.body).includes("made-in-outage"), `the cloud's new pod: ${names(fresh.body)}`);
        },
      );
    } finally {
      for (const c of clients) c.close();
      await lite.kill();
      await cluster.close();
      await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    }
  });
}

Deno.test("a write stuck behind a dead link gets a 504 after --write-timeout, saying it may have been applied", async () => {
  await using cluster = await startCluster();
  // Probes that take long to give up keep the proxy "online", so the write really goes upstream.
  await using lite = await startLite(cluster, {
    extra: ["--write-timeout", "1500ms", "--health-check-interval", "30s", "--health-check-failures", "10"],
  });
  const admin = httpsClient(lite.url, cluster.pki.caPem, { token: "admin-token" });
  try {
    assertEquals(
      (await admin.json("/api/v1/namespaces/default/configmaps")).status,
      200,
      "connection warmed up",
    );
    await cluster.apiserver.setFault("blackhole");
    // Without --write-timeout the write would wait on the dead link for good.
    const r = await within(
      createConfigMap(admin, "stuck"),
      "a 504 after --write-timeout 1500ms",
      20_000,
    );
    assertEquals([r.status, r.body.kind, r.body.reason], [504, "Status", "Timeout"]);
    assertMatch(String(r.body.message), /may or may not have been applied/);
  } finally {
    admin.close();
    await cluster.apiserver.setFault("none");
  }
});
