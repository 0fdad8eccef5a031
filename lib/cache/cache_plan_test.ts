import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { planFor } from "./cache_plan.ts";
import { parseRequestInfo } from "../request/request_info.ts";
import { representationOf } from "../request/representation.ts";

const who = { kind: "anonymous" as const, cacheId: "anon" };
const V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

Deno.test("discovery is cached as what the apiserver answered, each version apart", () => {
  const accept = `${V2},${V2BETA1},application/json`;
  const plan = planFor(who, parseRequestInfo("GET", "/apis"), representationOf(accept), "GET")!;
  const name = (ct: string) => plan.keyFor!(ct)?.name;
  assertEquals(name(V2), "%2Fapis~apidiscovery-v2");
  // An apiserver without v2 (1.27-1.29) answers v2beta1; one without aggregation, plain JSON.
  assertEquals(name(V2BETA1), "%2Fapis~apidiscovery-v2beta1");
  assertEquals(name("application/json"), "%2Fapis");
  assertEquals(name("application/vnd.kubernetes.protobuf"), undefined);
  // Plain JSON requests keep their fixed key.
  const legacy = planFor(who, parseRequestInfo("GET", "/apis"), "json", "GET")!;
  assertEquals([legacy.key.name, legacy.keyFor], ["%2Fapis", undefined]);
});

Deno.test("a watch-list plan collects initial events; a plain watch does not", () => {
  const wl =
    "/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
  assertEquals(planFor(who, parseRequestInfo("GET", wl), "json", "GET")?.initialEvents, true);
  assertEquals(
    planFor(who, parseRequestInfo("GET", "/api/v1/pods?watch=1"), "json", "GET")?.initialEvents,
    undefined,
  );
  // The same list key as a LIST: the snapshot answers an offline LIST.
  assertEquals(
    planFor(who, parseRequestInfo("GET", wl), "json", "GET")?.key,
    planFor(who, parseRequestInfo("GET", "/api/v1/pods"), "json", "GET")?.key,
  );
});
