import { deepStrictEqual as assertEquals, notDeepStrictEqual, ok, throws } from "node:assert/strict";
import {
  broaderListKeys,
  cacheKeyFor,
  cacheKeyString,
  encodeSegment,
  identitySegment,
  listKeyFor,
} from "./cache_key.ts";
import { parseRequestInfo } from "../request/request_info.ts";
import {
  discoveryPreferences,
  type Representation,
  representationOf,
  representationOfContentType,
} from "../request/representation.ts";
import { SelectorError } from "../request/selectors.ts";
import type { CacheKey } from "../store/store.ts";

const NODE = "cn~system:node:edge-1";
const SEGMENT = /^[A-Za-z0-9._:~%@+=,-]{1,200}$/;

function key(url: string, rep: Representation = "json", identity = NODE, method = "GET"): CacheKey {
  return cacheKeyFor(identity, parseRequestInfo(method, url), rep);
}

function assertSafe(k: CacheKey): void {
  for (const s of [k.identity, k.resource, k.namespace, k.name]) {
    ok(SEGMENT.test(s) && s !== "." && s !== "..", `unsafe segment ${JSON.stringify(s)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Representation

Deno.test("representationOf: real Accept headers", () => {
  const kubectlTable = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;" +
    "g=meta.k8s.io,application/json";
  const cases: Array<[string | null, Representation]> = [
    [null, "json"],
    ["", "json"],
    ["*/*", "json"],
    ["application/json", "json"],
    ["application/json, */*", "json"],
    [kubectlTable, "table"],
    ["application/json;as=Table;v=v1beta1;g=meta.k8s.io", "table"],
    ["application/json;as=Table;v=v2;g=meta.k8s.io,application/json", "json"],
    ["application/json;as=Table;v=v1;g=example.com", "other"],
    ["application/vnd.kubernetes.protobuf,application/json", "json"],
    ["application/vnd.kubernetes.protobuf, */*", "json"],
    ["application/vnd.kubernetes.protobuf", "protobuf-only"],
    ["application/vnd.kubernetes.protobuf;stream=watch", "protobuf-only"],
    [
      "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," +
      "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
      "pomlist",
    ],
    ["application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", "pom"],
    ["application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1", "pomlist"],
    [
      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList," +
      "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
      "apidiscovery-v2",
    ],
    ["application/yaml", "other"],
    ["application/yaml,application/json", "other"],
    ["text/html,application/json", "json"],
    ["text/html", "other"],
    ["application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io", "table"],
    ["application/json;as=Table;v=v1;g=meta.k8s.io;q=0, application/json", "json"],
    ["APPLICATION/JSON", "json"],
  ];
  for (const [accept, want] of cases) assertEquals(representationOf(accept), want, String(accept));
});

// ---------------------------------------------------------------------------------------------
// Keys

Deno.test("cacheKeyFor: layout of object, list and discovery keys", () => {
  assertEquals(key("/api/v1/namespaces/default/pods/web-0"), {
    identity: NODE,
    resource: "core~v1~pods",
    namespace: "default",
    name: "web-0",
  });
  assertEquals(
    key("/apis/apps/v1/namespaces/default/deployments/web/scale", "table").name,
    "web~s=scale~table",
  );
  assertEquals(key("/api/v1/nodes/edge-1/status"), {
    identity: NODE,
    resource: "core~v1~nodes",
    namespace: "_cluster",
    name: "edge-1~s=status",
  });
  assertEquals(key("/api/v1/namespaces/kube-system").namespace, "_cluster");
  assertEquals(key("/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1&limit=500&resourceVersion=0"), {
    identity: NODE,
    resource: "core~v1~pods",
    namespace: "_cluster",
    name: "_list~f=spec.nodeName%3Dedge-1",
  });
  assertEquals(
    key("/api/v1/namespaces/ns/pods?labelSelector=b%2Ca%3Dx&fieldSelector=status.phase%3DRunning", "table")
      .name,
    "_list~l=a%3Dx%2Cb~f=status.phase%3DRunning~table",
  );
  assertEquals(key("/apis/apps/v1/deployments").resource, "apps~v1~deployments");
  assertEquals(key("/api/v1/namespaces/ns/pods").name, "_list");
  // Discovery and other non-resource paths.
  assertEquals(key("/api"), {
    identity: NODE,
    resource: "_discovery",
    namespace: "_cluster",
    name: "%2Fapi",
  });
  assertEquals(key("/apis", "apidiscovery-v2").name, "%2Fapis~apidiscovery-v2");
  assertEquals(key("/apis/apps/v1").name, "%2Fapis%2Fapps%2Fv1");
  assertEquals(key("/version?timeout=5s"), key("/version"));
  assertEquals(key("/version").resource, "_discovery");
  assertEquals(key("/openapi/v3").resource, "_discovery");
  assertEquals(key("/healthz").resource, "_nonresource");
  // Discovery answers depend on no query parameter (an openapi v3 hash only names the current one).
  assertEquals(key("/openapi/v3/apis/apps/v1?hash=ABC"), key("/openapi/v3/apis/apps/v1"));
  assertEquals(key("/version?junk=1&timeout=5s"), key("/version"));
  assertEquals(key("/apis/apps/v1?x=y"), key("/apis/apps/v1"));
  assertEquals(
    key("/.well-known/openid-configuration?x=y").name,
    "%2F.well-known%2Fopenid-configuration~q=x%3Dy",
  );
});

Deno.test("cacheKeyFor: junk parameters on plain resource requests are left out; subresources keep theirs", () => {
  const obj = "/api/v1/namespaces/ns/configmaps/c";
  assertEquals(key(obj + "?junk=1"), key(obj));
  assertEquals(key("/api/v1/namespaces/ns/pods?junk=2"), key("/api/v1/namespaces/ns/pods"));
  assertEquals(
    key("/api/v1/namespaces/ns/pods?includeObject=None", "table").name,
    "_list~q=includeObject%3DNone~table",
  );
  assertEquals(key("/api/v1/namespaces/ns/pods/p/log?container=a").name, "p~s=log~q=container%3Da");
});

Deno.test("cacheKeyFor: parameters that do not change content are left out", () => {
  const base = "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb";
  const same = [
    base + "&timeout=8s",
    base + "&timeoutSeconds=300&watch=true&allowWatchBookmarks=true",
    base + "&limit=500&continue=abc",
    base + "&resourceVersion=123&resourceVersionMatch=NotOlderThan",
    base + "&sendInitialEvents=true&pretty=true",
    "/api/v1/watch/namespaces/ns/pods?labelSelector=app%3D%3Dweb",
    "/api/v1/namespaces/ns/pods?labelSelector=app+in+(web)",
  ];
  for (const url of same) assertEquals(key(url), key(base), url);
  const obj = "/api/v1/namespaces/ns/configmaps/c";
  assertEquals(key(obj + "?resourceVersion=0&timeout=3s"), key(obj));
});

Deno.test("cacheKeyFor: separation", () => {
  const base = "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb";
  const k = key(base);
  const different: CacheKey[] = [
    key(base, "json", "cn~system:node:edge-2"),
    key(base, "json", "token~abc"),
    key(base, "json", "anonymous"),
    key(base, "table"),
    key(base, "pomlist"),
    key(base, "protobuf-only"),
    key(base + "&fieldSelector=spec.nodeName%3Dx"),
    key("/api/v1/namespaces/ns/pods?labelSelector=app%3Ddb"),
    key("/api/v1/namespaces/ns/pods?labelSelector=app!%3Dweb"),
    key("/api/v1/namespaces/ns/pods"),
    key("/api/v1/namespaces/other/pods?labelSelector=app%3Dweb"),
    key("/api/v1/pods?labelSelector=app%3Dweb"),
    key("/apis/example.com/v1/namespaces/ns/pods?labelSelector=app%3Dweb"),
    key("/api/v2/namespaces/ns/pods?labelSelector=app%3Dweb"),
    key(base + "&includeObject=Object", "table"),
  ];
  const ids = new Set([cacheKeyString(k), ...different.map(cacheKeyString)]);
  assertEquals(ids.size, different.length + 1);
  // Objects vs subresources vs a list.
  const objs = [
    key("/api/v1/namespaces/ns/pods/p"),
    key("/api/v1/namespaces/ns/pods/p/status"),
    key("/api/v1/namespaces/ns/pods/p/log"),
    key("/api/v1/namespaces/ns/pods/p/log?container=a"),
    key("/api/v1/namespaces/ns/pods/p/log?container=b"),
    key("/api/v1/namespaces/ns/pods/p", "pom"),
    key("/api/v1/namespaces/ns/pods/_list"),
    key("/api/v1/namespaces/ns/pods/_"),
    key("/api/v1/namespaces/ns/pods/a_b"),
    key("/api/v1/namespaces/ns/pods"),
  ];
  assertEquals(new Set(objs.map(cacheKeyString)).size, objs.length);
  // Same-named resources of different groups do not collide.
  notDeepStrictEqual(key("/apis/a.io/v1/widgets"), key("/apis/b.io/v1/widgets"));
});

Deno.test("cacheKeyFor: stable and order-insensitive", () => {
  const a = key("/api/v1/pods?labelSelector=b,a%3Dx&fieldSelector=x%3D1,y%3D2&container=c&follow=1");
  const b = key("/api/v1/pods?follow=1&fieldSelector=y%3D%3D2,x%3D1&container=c&labelSelector=a%3D%3Dx,+b");
  assertEquals(a, b);
  assertEquals(key("/api/v1/pods"), key("/api/v1/pods"));
});

Deno.test("cacheKeyFor: a named watch is the list of that name", () => {
  const legacy = key("/api/v1/watch/namespaces/ns/configmaps/c1");
  const param = key("/api/v1/namespaces/ns/configmaps/c1?watch=true");
  const informer = key("/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dc1&watch=1");
  const list = key("/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dc1");
  assertEquals(legacy, informer);
  assertEquals(param, informer);
  assertEquals(list, informer);
  assertEquals(list.name, "_list~f=metadata.name%3Dc1");
  assertEquals(
    listKeyFor(NODE, parseRequestInfo("GET", "/api/v1/namespaces/ns/configmaps"), "json").name,
    "_list",
  );
});

Deno.test("cacheKeyFor: invalid selectors throw SelectorError", () => {
  throws(() => key("/api/v1/pods?labelSelector=a%20b"), SelectorError);
  throws(() => key("/api/v1/pods?fieldSelector=nonsense"), SelectorError);
});

Deno.test("encodeSegment: character rules", () => {
  assertEquals(encodeSegment("web-0.abc:1_x"), "web-0.abc:1_x");
  assertEquals(encodeSegment("_list"), "%5Flist");
  assertEquals(encodeSegment("a/b c~d%e"), "a%2Fb%20c%7Ed%25e");
  assertEquals(encodeSegment("✓"), "%E2%9C%93");
  assertEquals(encodeSegment(""), "_");
  assertEquals(encodeSegment("."), "%2E");
  assertEquals(encodeSegment(".."), "%2E%2E");
  assertEquals(encodeSegment("..."), "...");
  for (const s of ["", ".", "..", "a/b", "\u0000", "=,@+", "x".repeat(500), "✓".repeat(100)]) {
    ok(SEGMENT.test(encodeSegment(s)), s);
  }
  assertSafe(key("/api/v1/namespaces/%2E%2E/pods/%2E"));
  assertEquals(key("/apis/rbac.authorization.k8s.io/v1/clusterroles/_list").name, "%5Flist");
  assertEquals(key("/api/v1/namespaces/_cluster/pods").namespace, "%5Fcluster");
  assertEquals(key("/api/v1/namespaces/%2E%2E/pods/%2E").namespace, "%2E%2E");
});

Deno.test("encodeSegment: long segments are capped with a stable hash", () => {
  const long = "a".repeat(300);
  const e = encodeSegment(long);
  assertEquals(e.length <= 200, true);
  assertEquals(e, encodeSegment(long));
  ok(/~h=[0-9a-f]{32}$/.test(e), e);
  ok(e.startsWith("a".repeat(100)));
  // Same prefix, different tail: different segments.
  notDeepStrictEqual(encodeSegment("a".repeat(300) + "b"), e);
  // Exactly 200 is kept as is, 201 is capped.
  assertEquals(encodeSegment("a".repeat(200)), "a".repeat(200));
  ok(encodeSegment("a".repeat(201)).includes("~h="));
  // A cut never leaves half a %XX escape.
  for (let pad = 0; pad < 4; pad++) {
    const s = encodeSegment("a".repeat(pad) + "/".repeat(100));
    ok(/^a*(%2F)*~h=[0-9a-f]{32}$/.test(s), s);
  }
  // A long label selector still yields a safe, distinct key.
  const sel = (v: string) => `/api/v1/pods?labelSelector=${encodeURIComponent(`a in (${v})`)}`;
  const vals = Array.from({ length: 40 }, (_, i) => `value-${i}`).join(",");
  const k1 = key(sel(vals));
  const k2 = key(sel(vals + ",extra"));
  assertSafe(k1);
  assertSafe(k2);
  notDeepStrictEqual(k1, k2);
});

Deno.test("identitySegment keeps safe cacheIds and encodes the rest", () => {
  assertEquals(identitySegment("cn~system:node:edge-1"), "cn~system:node:edge-1");
  assertEquals(identitySegment("anonymous"), "anonymous");
  assertEquals(identitySegment("cn~John Doe"), "cn%7EJohn%20Doe");
  assertEquals(identitySegment(".."), "%2E%2E");
  ok(SEGMENT.test(identitySegment("token~" + "f".repeat(300))));
  assertSafe(key("/api/v1/pods", "json", "cn~a/b"));
});

// ---------------------------------------------------------------------------------------------
// Broader lists

function broader(url: string, rep: Representation = "json"): string[] {
  return broaderListKeys(NODE, parseRequestInfo("GET", url), rep).map((k) => `${k.namespace}/${k.name}`);
}

Deno.test("broaderListKeys: preference order", () => {
  assertEquals(
    broader("/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn"),
    [
      "ns/_list",
      "_cluster/_list",
      "ns/_list~l=app%3Dweb",
      "ns/_list~f=spec.nodeName%3Dn",
      "_cluster/_list~l=app%3Dweb~f=spec.nodeName%3Dn",
      "_cluster/_list~l=app%3Dweb",
      "_cluster/_list~f=spec.nodeName%3Dn",
    ],
  );
  assertEquals(broader("/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb"), [
    "ns/_list",
    "_cluster/_list",
    "_cluster/_list~l=app%3Dweb",
  ]);
  assertEquals(broader("/api/v1/namespaces/ns/pods"), ["_cluster/_list"]);
  assertEquals(broader("/api/v1/pods?fieldSelector=spec.nodeName%3Dn&watch=1"), ["_cluster/_list"]);
  assertEquals(broader("/api/v1/nodes"), []);
  assertEquals(broader("/api/v1/watch/nodes/edge-1"), ["_cluster/_list"]);
  // Not a collection, or a representation we cannot filter: nothing.
  assertEquals(broader("/api/v1/namespaces/ns/pods/p"), []);
  assertEquals(broader("/api"), []);
  assertEquals(broader("/api/v1/namespaces/ns/pods?labelSelector=a", "table"), []);
  assertEquals(broader("/api/v1/namespaces/ns/pods?labelSelector=a", "protobuf-only"), []);
  assertEquals(broader("/api/v1/namespaces/ns/pods?labelSelector=a", "pomlist"), [
    "ns/_list~pomlist",
    "_cluster/_list~pomlist",
    "_cluster/_list~l=a~pomlist",
  ]);
  assertEquals(broader("/api/v1/pods?fieldSelector=spec.nodeName%3Dn", "pomlist"), []);
});

Deno.test("broaderListKeys: keys match the keys the broader requests get", () => {
  const info = parseRequestInfo("GET", "/api/v1/namespaces/ns/pods?labelSelector=a%3Db&timeout=5s");
  const keys = broaderListKeys(NODE, info, "json");
  assertEquals(keys[0], key("/api/v1/namespaces/ns/pods"));
  assertEquals(keys[1], key("/api/v1/pods?limit=10"));
  assertEquals(keys[2], key("/api/v1/pods?labelSelector=a%3D%3Db"));
  for (const k of keys) assertSafe(k);
  // Deterministic.
  assertEquals(broaderListKeys(NODE, info, "json"), keys);
});

Deno.test("discovery representations: v2 and v2beta1 kept apart, preferences in the client's order", () => {
  const v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
  const v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
  // kubectl 1.27-1.29 (client-go <= 1.29) and 1.30+.
  assertEquals(representationOf(`${v2beta1},application/json`), "apidiscovery-v2beta1");
  assertEquals(representationOf(`${v2},${v2beta1},application/json`), "apidiscovery-v2");
  assertEquals(discoveryPreferences(`${v2beta1},application/json`), ["apidiscovery-v2beta1", "json"]);
  assertEquals(discoveryPreferences(`${v2},${v2beta1},application/json`), [
    "apidiscovery-v2",
    "apidiscovery-v2beta1",
    "json",
  ]);
  assertEquals(discoveryPreferences(`${v2};q=0.5,${v2beta1}`), ["apidiscovery-v2beta1", "apidiscovery-v2"]);
  assertEquals(discoveryPreferences(v2), ["apidiscovery-v2"]);
  assertEquals(
    discoveryPreferences("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
    [],
  );
  assertEquals(discoveryPreferences(undefined), ["json"]);
  // What an answer is cached as.
  assertEquals(representationOfContentType(v2), "apidiscovery-v2");
  assertEquals(representationOfContentType(v2beta1), "apidiscovery-v2beta1");
  assertEquals(representationOfContentType("application/json"), "json");
  assertEquals(representationOfContentType("application/vnd.kubernetes.protobuf"), undefined);
  assertEquals(key("/apis", "apidiscovery-v2beta1").name, "%2Fapis~apidiscovery-v2beta1");
});
