import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { convertDiscovery, discoveryContentType } from "./discovery_versions.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("aggregated discovery: v2 ↔ v2beta1 changes only apiVersion; nothing else converts", () => {
  const items = [{
    metadata: { name: "apps" },
    versions: [{ version: "v1", resources: [], freshness: "Current" }],
  }];
  const v2 = enc.encode(
    JSON.stringify({
      kind: "APIGroupDiscoveryList",
      apiVersion: "apidiscovery.k8s.io/v2",
      metadata: {},
      items,
    }),
  );
  const beta = convertDiscovery(v2, "apidiscovery-v2", "apidiscovery-v2beta1");
  assertEquals(JSON.parse(dec.decode(beta!)), {
    kind: "APIGroupDiscoveryList",
    apiVersion: "apidiscovery.k8s.io/v2beta1",
    metadata: {},
    items,
  });
  assertEquals(
    JSON.parse(dec.decode(convertDiscovery(beta!, "apidiscovery-v2beta1", "apidiscovery-v2")!)).apiVersion,
    "apidiscovery.k8s.io/v2",
  );
  // Not what the key says it is, or not discovery at all: not converted.
  assertEquals(convertDiscovery(v2, "apidiscovery-v2beta1", "apidiscovery-v2"), undefined);
  assertEquals(
    convertDiscovery(
      enc.encode('{"kind":"APIGroupList","apiVersion":"v1"}'),
      "apidiscovery-v2",
      "apidiscovery-v2beta1",
    ),
    undefined,
  );
  assertEquals(convertDiscovery(enc.encode("{"), "apidiscovery-v2", "apidiscovery-v2beta1"), undefined);
  assertEquals(
    discoveryContentType("apidiscovery-v2beta1"),
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
  );
});
