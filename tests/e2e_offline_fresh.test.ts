/**
 * Offline answers are the newest the cache holds, and offline misses fail fast for client-go.
 * Real process, real kubectl, both cache backends.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  httpsClient,
  kubectl,
  type LiteProcess,
  startCluster,
  startLite,
  WatchStream,
  writeKubeconfig,
} from "./support/harness.ts";

type Obj = { metadata: { name: string; resourceVersion: string }; data?: Record<string, string> };

/** Reads watch events until one satisfies `until`; fails if the stream ends first or after 15 s. */
async function waitForEvent(res: Response, until: (ev: { type: string; object: Obj }) => boolean) {
  const w = new WatchStream<{ type: string; object: Obj }>(res.body!);
  const seen = await w.until((evs) => evs.some(until), "the expected watch event");
  await w.cancel();
  if (!seen) throw new Error("watch ended before the expected event");
}

async function withLite(
  backend: "sqlite" | "file",
  fn: (cluster: Cluster, lite: LiteProcess, kc: string) => Promise<void>,
  extra: string[] = [],
) {
  const cluster = await startCluster();
  const lite = await startLite(cluster, { backend, extra });
  try {
    const kc = await writeKubeconfig(
      cluster.dir,
      `kubelet-${backend}`,
      lite.url,
      cluster.pki.caCert,
      cluster.kubelet,
    );
    await fn(cluster, lite, kc);
  } finally {
    await lite.kill();
    await cluster.close();
    await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
  }
}

for (const backend of ["sqlite", "file"] as const) {
  Deno.test(`offline GET returns the newest cached version (${backend})`, async () => {
    await withLite(backend, async (cluster, lite, kc) => {
      const n = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
      try {
        // v1 cached by a GET.
        const get = await kubectl("1.33", kc, ["get", "configmap", "app-config", "-o", "json"]);
        assertEquals(get.code, 0, get.stderr);
        assertEquals((JSON.parse(get.stdout) as Obj).data?.["log.level"], "info");
        // A narrower list cached before the change (by labels): offline it must not hide v2 either.
        const LABELLED = "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dnginx";
        assertEquals((await n.json(LABELLED)).status, 200);
        // A list and a watch through the proxy: the watch delivers v2 (MODIFIED).
        const list = await n.json("/api/v1/namespaces/default/configmaps");
        assertEquals(list.status, 200);
        const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
        const watch = await n.request(`/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${rv}`);
        assertEquals(watch.status, 200);
        const cm = cluster.apiserver.get("v1", "ConfigMap", "default", "app-config") as Obj;
        cluster.apiserver.update({ ...cm, data: { ...cm.data, "log.level": "debug" } });
        await waitForEvent(
          watch,
          (ev) => ev.type === "MODIFIED" && ev.object.metadata.name === "app-config",
        );

        const from = lite.lines.length;
        await cluster.apiserver.setFault("refuse");
        await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
        const offline = await kubectl("1.33", kc, ["get", "configmap", "app-config", "-o", "json"]);
        assertEquals(offline.code, 0, offline.stderr);
        assertEquals(
          (JSON.parse(offline.stdout) as Obj).data?.["log.level"],
          "debug",
          "offline GET returns the version the watch delivered, not the older GET answer",
        );
        // The plain JSON GET, as client-go sends it, agrees.
        const direct = await n.json("/api/v1/namespaces/default/configmaps/app-config");
        assertEquals([direct.status, (direct.body as unknown as Obj).data?.["log.level"]], [200, "debug"]);
        const labelled = await n.json(LABELLED);
        assertEquals(
          [labelled.status, (labelled.body.items as Obj[]).map((o) => o.data?.["log.level"])],
          [200, ["debug"]],
          "offline LIST derived from the broader, watched list",
        );
      } finally {
        n.close();
      }
    });
  });
}

Deno.test("an offline miss fails at once for client-go (kubectl 1.27 and 1.33)", async () => {
  await withLite("sqlite", async (cluster, lite, kc) => {
    // Discovery is primed online for both versions, so the only miss offline is the object itself.
    for (const v of ["1.27", "1.33"]) {
      const r = await kubectl(v, kc, ["get", "configmap", "app-config", "-o", "name"]);
      assertEquals(r.code, 0, r.stderr);
    }
    const from = lite.lines.length;
    await cluster.apiserver.setFault("refuse");
    await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
    for (const v of ["1.27", "1.33"]) {
      const name = `never-cached-${v.replace(".", "-")}`;
      const before = lite.lines.length;
      const started = performance.now();
      const r = await kubectl(v, kc, ["get", "configmap", name, "-o", "json"]);
      const ms = performance.now() - started;
      console.log(`[kubectl ${v}] offline miss: exit ${r.code} after ${ms.toFixed(0)} ms`);
      assert(r.code !== 0, `kubectl ${v} must fail on an offline miss`);
      assertMatch(r.stderr, /unreachable .*nothing is cached for this request/);
      assert(!/rate limiter|Wait returned/.test(r.stderr), `kubectl ${v} did not retry: ${r.stderr}`);
      // One request for the object: client-go did not retry it.
      const seen = lite.lines.slice(before).filter((l) => l.includes(`/configmaps/${name}`));
      assertEquals(seen.length, 1, `requests for ${name} seen by the proxy:\n${seen.join("\n")}`);
    }
  }, ["--log-level", "debug"]);
});
