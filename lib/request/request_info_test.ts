import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseRequestInfo, type RequestInfo } from "./request_info.ts";

type Expect = Partial<Omit<RequestInfo, "query">>;

const cases: Array<[method: string, url: string, want: Expect]> = [
  // Core group, namespaced.
  ["GET", "/api/v1/namespaces/default/pods", {
    isResourceRequest: true,
    verb: "list",
    apiPrefix: "api",
    group: "",
    version: "v1",
    resource: "pods",
    namespace: "default",
    name: "",
    subresource: "",
  }],
  ["GET", "/api/v1/namespaces/default/pods/web-0", { verb: "get", resource: "pods", name: "web-0" }],
  ["GET", "/api/v1/namespaces/default/pods/web-0/log?container=c&follow=true", {
    verb: "get",
    name: "web-0",
    subresource: "log",
    path: "/api/v1/namespaces/default/pods/web-0/log",
  }],
  ["POST", "/api/v1/namespaces/default/pods/web-0/exec?command=ls", { verb: "create", subresource: "exec" }],
  ["POST", "/api/v1/namespaces/kube-system/serviceaccounts/coredns/token", {
    verb: "create",
    resource: "serviceaccounts",
    name: "coredns",
    subresource: "token",
    namespace: "kube-system",
  }],
  ["PUT", "/api/v1/namespaces/default/pods/web-0/status", { verb: "update", subresource: "status" }],
  ["PATCH", "/api/v1/nodes/edge-1/status", {
    verb: "patch",
    resource: "nodes",
    name: "edge-1",
    subresource: "status",
  }],
  ["DELETE", "/api/v1/namespaces/default/pods/web-0", { verb: "delete", name: "web-0" }],
  ["DELETE", "/api/v1/namespaces/default/pods?labelSelector=a%3Db", {
    verb: "deletecollection",
    labelSelector: "a=b",
  }],
  ["POST", "/api/v1/namespaces/default/configmaps", { verb: "create", resource: "configmaps", name: "" }],
  ["HEAD", "/api/v1/namespaces/default/pods/x", { verb: "get" }],
  // Cluster-scoped and all-namespaces.
  ["GET", "/api/v1/nodes", { verb: "list", resource: "nodes", namespace: "" }],
  ["GET", "/api/v1/nodes/edge-1", { verb: "get", resource: "nodes", name: "edge-1", namespace: "" }],
  ["GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1&limit=500&resourceVersion=0", {
    verb: "list",
    resource: "pods",
    namespace: "",
    fieldSelector: "spec.nodeName=edge-1",
  }],
  // Namespaces themselves.
  ["GET", "/api/v1/namespaces", { verb: "list", resource: "namespaces", namespace: "", name: "" }],
  ["GET", "/api/v1/namespaces/kube-system", {
    verb: "get",
    resource: "namespaces",
    name: "kube-system",
    namespace: "",
  }],
  ["PUT", "/api/v1/namespaces/ns1/finalize", {
    verb: "update",
    resource: "namespaces",
    name: "ns1",
    subresource: "finalize",
  }],
  ["GET", "/api/v1/namespaces/ns1/status", {
    verb: "get",
    resource: "namespaces",
    name: "ns1",
    subresource: "status",
  }],
  // Named groups.
  ["GET", "/apis/apps/v1/namespaces/default/deployments", {
    apiPrefix: "apis",
    group: "apps",
    version: "v1",
    resource: "deployments",
    namespace: "default",
    verb: "list",
  }],
  ["GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", {
    name: "web",
    subresource: "scale",
    verb: "get",
  }],
  ["GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/edge-1", {
    group: "coordination.k8s.io",
    resource: "leases",
    name: "edge-1",
  }],
  ["GET", "/apis/storage.k8s.io/v1/csidrivers", {
    group: "storage.k8s.io",
    resource: "csidrivers",
    namespace: "",
  }],
  // Watches.
  ["GET", "/api/v1/namespaces/default/pods?watch=1", { verb: "watch", name: "" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=10", { verb: "watch" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=false", { verb: "list" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=0", { verb: "list" }],
  // The apiserver's boolean parameters: anything but "0"/"false" is true (python sends "True").
  ["GET", "/api/v1/namespaces/default/pods?watch=True", { verb: "watch" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=yes", { verb: "watch" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=", { verb: "watch" }],
  ["GET", "/api/v1/namespaces/default/pods?watch=FALSE", { verb: "list" }],
  ["GET", "/api/v1/watch/namespaces/default/pods", { verb: "watch", resource: "pods", namespace: "default" }],
  ["GET", "/api/v1/watch/namespaces/default/pods/web-0", { verb: "watch", name: "web-0" }],
  ["GET", "/api/v1/watch/pods", { verb: "watch", resource: "pods", namespace: "" }],
  ["GET", "/apis/apps/v1/watch/deployments", { verb: "watch", group: "apps", resource: "deployments" }],
  ["GET", "/api/v1/namespaces/default/pods/web-0?watch=true", { verb: "watch", name: "web-0" }],
  ["GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dedge-1&watch=true", {
    verb: "watch",
    name: "",
    fieldSelector: "metadata.name=edge-1",
  }],
  ["GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dedge-1", { verb: "list", name: "" }],
  // Proxy prefix.
  ["GET", "/api/v1/proxy/namespaces/default/pods/web-0", { verb: "proxy", name: "web-0", resource: "pods" }],
  // Discovery and other non-resource paths.
  ["GET", "/api", { isResourceRequest: false, verb: "get", apiPrefix: "", resource: "" }],
  ["GET", "/api/v1", { isResourceRequest: false, verb: "get" }],
  ["GET", "/apis", { isResourceRequest: false }],
  ["GET", "/apis/apps", { isResourceRequest: false }],
  ["GET", "/apis/apps/v1", { isResourceRequest: false, verb: "get" }],
  ["GET", "/version?timeout=5s", { isResourceRequest: false, verb: "get", path: "/version" }],
  ["GET", "/healthz", { isResourceRequest: false }],
  ["GET", "/openapi/v3/apis/apps/v1?hash=abc", {
    isResourceRequest: false,
    path: "/openapi/v3/apis/apps/v1",
  }],
  ["POST", "/some/thing", { isResourceRequest: false, verb: "post" }],
  ["OPTIONS", "/api/v1/pods", { isResourceRequest: true, verb: "options" }],
  // Odd shapes.
  ["GET", "/", { isResourceRequest: false, path: "/" }],
  ["GET", "", { isResourceRequest: false, path: "/" }],
  ["GET", "?a=b", { isResourceRequest: false, path: "/" }],
  ["GET", "/api/v1/watch", { isResourceRequest: false }],
  ["GET", "/api/v1/pods/", { verb: "list", resource: "pods" }],
  ["GET", "/foo/v1/pods", { isResourceRequest: false }],
  ["GET", "/api/v1/namespaces/default/pods/%E2%9C%93", { name: "✓" }],
  ["GET", "/api/v1/namespaces/default/pods/%ZZ", { name: "%ZZ" }],
  ["GET", "https://host:6443/api/v1/nodes?limit=1", {
    resource: "nodes",
    path: "/api/v1/nodes",
    verb: "list",
  }],
  ["GET", "/api/v1/nodes#frag", { resource: "nodes", path: "/api/v1/nodes" }],
  ["get", "/api/v1/nodes/n1", { verb: "get", name: "n1" }],
  ["GET", "/api/v1/namespaces/a/pods/b/c/d/e", { resource: "pods", name: "b", subresource: "c" }],
];

for (const [method, url, want] of cases) {
  Deno.test(`parseRequestInfo ${method} ${url || "(empty)"}`, () => {
    const got = parseRequestInfo(method, url);
    const picked = Object.fromEntries(Object.keys(want).map((k) => [k, got[k as keyof RequestInfo]]));
    assertEquals(picked, want);
  });
}

Deno.test("parseRequestInfo keeps the query and reads selectors", () => {
  const info = parseRequestInfo(
    "GET",
    "/api/v1/pods?labelSelector=app%20in%20(a%2Cb)&fieldSelector=status.phase!%3DRunning&limit=5",
  );
  assertEquals(info.labelSelector, "app in (a,b)");
  assertEquals(info.fieldSelector, "status.phase!=Running");
  assertEquals(info.query.get("limit"), "5");
});

Deno.test("parseRequestInfo never throws on garbage", () => {
  const junk = [
    "%",
    "/%%%/",
    "//api//v1//",
    "/api/%/pods",
    "\u0000",
    "/apis/a/b/c/d/e/f/g/h/i/j?x=%",
    "*",
    "http://",
  ];
  for (const url of junk) {
    for (const method of ["GET", "DELETE", "BREW", ""]) parseRequestInfo(method, url);
  }
});
