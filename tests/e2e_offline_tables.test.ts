/**
 * Offline Tables agree with the freshest JSON data: a pod deleted, a pod added and a pod changed
 * through a relayed JSON watch before the cut show as such in an offline `kubectl get pods`,
 * although the cached Table was listed before those changes. Real kubectl 1.27 and 1.33.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import {
  httpsClient,
  kubectl,
  readUntil,
  startCluster,
  startLite,
  writeKubeconfig,
} from "./support/harness.ts";

type Obj = { metadata: { name: string; resourceVersion: string }; status?: Record<string, unknown> };

for (const backend of ["sqlite", "file"] as const) {
  Deno.test(`offline kubectl get pods agrees with watch-delivered changes (${backend})`, async () => {
    const cluster = await startCluster();
    const lite = await startLite(cluster, { backend });
    const client = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      const kc = await writeKubeconfig(cluster.dir, "kubelet", lite.url, cluster.pki.caCert, cluster.kubelet);
      for (const v of ["1.27", "1.33"]) {
        for (const args of [["get", "pods"], ["get", "pods", "-o", "wide"]]) {
          const r = await kubectl(v, kc, args);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stdout, /nginx-2/);
        }
      }
      // An informer-like JSON list + watch through the proxy for the same identity.
      const list = await client.json("/api/v1/namespaces/default/pods");
      const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
      const watch = await client.request(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${rv}`);
      const reader = watch.body!.pipeThrough(new TextDecoderStream()).getReader();

      cluster.apiserver.remove("v1", "Pod", "default", "nginx-2");
      cluster.apiserver.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "added-by-watch", namespace: "default", labels: { app: "new" } },
        spec: { nodeName: "edge-9", containers: [{ name: "c", image: "busybox" }] },
        // As the apiserver defaults it.
        status: { phase: "Pending" },
      });
      const p = cluster.apiserver.get("v1", "Pod", "default", "nginx-1") as Obj;
      const statuses = (p.status!.containerStatuses as Array<Record<string, unknown>>)
        .map((c) => ({ ...c, restartCount: 7 }));
      cluster.apiserver.update({ ...p, status: { ...p.status, containerStatuses: statuses } });
      await readUntil(
        reader,
        (seen) =>
          seen.includes('"DELETED"') && seen.includes("added-by-watch") && seen.includes('"restartCount":7'),
        "the DELETED, added-by-watch and restartCount 7 events",
      );
      await reader.cancel();

      const from = lite.lines.length;
      await cluster.apiserver.setFault("refuse");
      await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
      for (const v of ["1.27", "1.33"]) {
        const r = await kubectl(v, kc, ["get", "pods"]);
        assertEquals(r.code, 0, r.stderr);
        assert(!/nginx-2/.test(r.stdout), `kubectl ${v}: the deleted pod is gone offline:\n${r.stdout}`);
        assertMatch(
          r.stdout,
          /added-by-watch\s+0\/1\s+Pending\s+0\s+\d+s/,
          `kubectl ${v}: the added pod:\n${r.stdout}`,
        );
        assertMatch(
          r.stdout,
          /nginx-1\s+1\/1\s+Running\s+7\s+/,
          `kubectl ${v}: current cells of the changed pod`,
        );
        assertMatch(r.stdout, /redis-0\s+1\/1\s+Running\s+0\s+/, `kubectl ${v}: unchanged rows stay`);
        const wide = await kubectl(v, kc, ["get", "pods", "-o", "wide"]);
        assertEquals(wide.code, 0, wide.stderr);
        assertMatch(
          wide.stdout,
          /added-by-watch\s.*\sedge-9\s/,
          `kubectl ${v}: wide columns of the added pod`,
        );
        assert(!/nginx-2/.test(wide.stdout), `kubectl ${v} -o wide:\n${wide.stdout}`);
      }
    } catch (e) {
      console.log(lite.lines.filter((l) => !/DEBUG/.test(l)).slice(-40).join("\n"));
      throw e;
    } finally {
      client.close();
      await lite.kill();
      await cluster.close();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  });
}
