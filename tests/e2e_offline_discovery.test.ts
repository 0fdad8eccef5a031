/**
 * Aggregated discovery offline for every kubectl generation: 1.27-1.29 (client-go <= 1.29) read only
 * apidiscovery.k8s.io/v2beta1, 1.30+ prefer v2. Each version's answer is kept apart, and offline a
 * client gets only a representation its Accept lists: the cached one it prefers, else one made from
 * the other aggregated version (v2 is v2beta1 promoted, same fields), else the legacy documents.
 * Real process, real kubectl, the simulated apiserver answering per Accept as a 1.31 one does.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  httpsClient,
  kubectl,
  type LiteProcess,
  startCluster,
  startLite,
  writeKubeconfig,
} from "./support/harness.ts";

const V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
/** The Accept of client-go <= 1.29 (kubectl 1.27-1.29) and of 1.30+. */
const ACCEPT_OLD = `${V2BETA1},application/json`;
const ACCEPT_NEW = `${V2},${V2BETA1},application/json`;
const OLD = ["1.27", "1.29"];

/** The aggregated discovery versions kubectl got (the Content-Types in its -v=8 log). */
function discoveryVersionsSeen(stderr: string): string[] {
  const seen = new Set<string>();
  for (const m of stderr.matchAll(/Content-Type: application\/json;g=apidiscovery\.k8s\.io;v=(\w+);/g)) {
    seen.add(m[1]);
  }
  return [...seen].sort();
}

/** kubectl `api-resources` and `get pods` both work; returns the discovery versions it read. */
async function kubectlWorks(version: string, kc: string): Promise<string[]> {
  const res = await kubectl(version, kc, ["api-resources", "-v=8"]);
  assertEquals(res.code, 0, `kubectl ${version} api-resources: ${res.stderr.slice(-2000)}`);
  const rows = res.stdout.trim().split("\n").slice(1);
  assert(
    rows.some((r) => /^pods\s+po\s+v1\s+true\s+Pod$/.test(r)),
    `kubectl ${version}: no pods row:\n${res.stdout}`,
  );
  assert(rows.some((r) => /^deployments\s+deploy\s+apps\/v1\s+true\s+Deployment$/.test(r)), res.stdout);
  const pods = await kubectl(version, kc, ["get", "pods", "-n", "default", "-o", "name"]);
  assertEquals(pods.code, 0, `kubectl ${version} get pods: ${pods.stderr}`);
  assert(pods.stdout.includes("pod/nginx-1"), pods.stdout);
  return discoveryVersionsSeen(res.stderr);
}

async function withLite(fn: (cluster: Cluster, lite: LiteProcess, kc: string) => Promise<void>) {
  const cluster = await startCluster();
  const lite = await startLite(cluster, { backend: "sqlite" });
  try {
    const kc = await writeKubeconfig(cluster.dir, "admin", lite.url, cluster.pki.caCert, {
      token: "admin-token",
    });
    await fn(cluster, lite, kc);
  } finally {
    await lite.kill();
    await cluster.close();
    await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
  }
}

async function cut(cluster: Cluster, lite: LiteProcess) {
  const from = lite.lines.length;
  await cluster.apiserver.setFault("refuse");
  await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
}

// Both orders of writing; and one version only cached: the other is made from it (same fields).
for (const order of [["1.27", "1.29", "1.33"], ["1.33", "1.27", "1.29"], ["1.33"], ["1.27"]]) {
  Deno.test(`discovery offline: kubectl ${order.join(", ")} online, then 1.33, 1.29, 1.27 offline`, async () => {
    await withLite(async (cluster, lite, kc) => {
      for (const v of order) {
        const seen = await kubectlWorks(v, kc);
        assertEquals(seen, [OLD.includes(v) ? "v2beta1" : "v2"], `kubectl ${v} online`);
      }
      await cut(cluster, lite);
      for (const v of ["1.33", ...OLD].reverse()) {
        const seen = await kubectlWorks(v, kc);
        // 1.33 also accepts v2beta1: a cached answer it accepts is served as it is.
        const want = OLD.includes(v) || !order.includes("1.33") ? "v2beta1" : "v2";
        assertEquals(seen, [want], `kubectl ${v} offline`);
      }
      // The exact answers: a version the client listed, cached as it is or made from the other one.
      const c = httpsClient(lite.url, cluster.pki.caPem, { token: "admin-token" });
      try {
        for (const path of ["/api", "/apis"]) {
          const cases = [
            [ACCEPT_OLD, "v2beta1"],
            [ACCEPT_NEW, order.includes("1.33") ? "v2" : "v2beta1"],
            [V2BETA1, "v2beta1"],
            [V2, "v2"],
          ];
          for (const [accept, v] of cases) {
            const r = await c.json(path, { headers: { accept } });
            assertEquals(r.status, 200, `${path} ${accept}`);
            assertEquals(r.headers.get("content-type"), v === "v2" ? V2 : V2BETA1);
            assertEquals([r.body.kind, r.body.apiVersion], [
              "APIGroupDiscoveryList",
              `apidiscovery.k8s.io/${v}`,
            ]);
          }
        }
      } finally {
        c.close();
      }
    });
  });
}

Deno.test("discovery offline: only legacy discovery cached → served to a client that also accepts plain JSON", async () => {
  await withLite(async (cluster, lite) => {
    const c = httpsClient(lite.url, cluster.pki.caPem, { token: "reader-token" });
    try {
      // Online, a client that asks only for plain JSON: the legacy APIGroupList.
      const online = await c.json("/apis", { headers: { accept: "application/json" } });
      assertEquals([online.status, online.body.kind], [200, "APIGroupList"]);
      await cut(cluster, lite);
      for (const accept of [ACCEPT_OLD, ACCEPT_NEW]) {
        const r = await c.json("/apis", { headers: { accept } });
        assertEquals([r.status, r.body.kind, r.headers.get("content-type")], [
          200,
          "APIGroupList",
          "application/json",
        ]);
      }
      // A client that accepts only aggregated discovery: nothing it can read is cached.
      const only = await c.json("/apis", { headers: { accept: V2 } });
      assertEquals(only.status, 503, JSON.stringify(only.body));
    } finally {
      c.close();
    }
  });
});
