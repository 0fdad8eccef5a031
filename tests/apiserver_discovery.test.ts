/**
 * The simulated apiserver's discovery answers per Accept, as a 1.31 kube-apiserver: aggregated
 * discovery in v2 or v2beta1 (the first the client lists), the legacy documents for plain JSON.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { httpsClient, startCluster } from "./support/harness.ts";

const V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

type Resource = {
  resource: string;
  responseKind: { kind: string };
  scope: string;
  subresources?: { subresource: string }[];
};
type Group = {
  metadata: { name?: string };
  versions: { version: string; resources: Resource[]; freshness: string }[];
};

Deno.test("simulated apiserver: discovery per Accept (v2, v2beta1, legacy)", async () => {
  await using cluster = await startCluster();
  const c = httpsClient(cluster.apiserver.url, cluster.pki.caPem, { token: "admin-token" });
  try {
    const cases: Array<[string, string, string | undefined]> = [
      [`${V2BETA1},application/json`, "/apis", "v2beta1"], // client-go <= 1.29
      [`${V2},${V2BETA1},application/json`, "/apis", "v2"], // client-go >= 1.30
      [`${V2};q=0.5,${V2BETA1}`, "/api", "v2beta1"],
      ["application/json", "/apis", undefined],
      [`application/json,${V2}`, "/apis", undefined],
      [`${V2},application/json`, "/apis/apps/v1", undefined], // aggregated only at /api and /apis
    ];
    for (const [accept, path, v] of cases) {
      const r = await c.json(path, { headers: { accept } });
      assertEquals(r.status, 200, `${path} ${accept}`);
      if (!v) {
        assertEquals(r.headers.get("content-type"), "application/json", accept);
        assert(r.body.kind === "APIGroupList" || r.body.kind === "APIResourceList", JSON.stringify(r.body));
        continue;
      }
      assertEquals(r.headers.get("content-type"), v === "v2" ? V2 : V2BETA1, accept);
      assertEquals([r.body.kind, r.body.apiVersion], ["APIGroupDiscoveryList", `apidiscovery.k8s.io/${v}`]);
    }
    const core = (await c.json("/api", { headers: { accept: V2 } })).body.items as Group[];
    assertEquals(core.length, 1);
    const pods = core[0].versions[0].resources.find((r) => r.resource === "pods")!;
    assertEquals([pods.responseKind.kind, pods.scope], ["Pod", "Namespaced"]);
    assertEquals(pods.subresources?.map((s) => s.subresource).sort(), ["exec", "log", "status"]);
    const groups = (await c.json("/apis", { headers: { accept: V2 } })).body.items as Group[];
    const apps = groups.find((g) => g.metadata.name === "apps")!;
    assert(apps.versions[0].resources.some((r) => r.resource === "deployments"), JSON.stringify(apps));
  } finally {
    c.close();
  }
});
