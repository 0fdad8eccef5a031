import { deepStrictEqual as assertEquals, equal, notEqual, throws as assertThrows } from "node:assert/strict";
import {
  isKubernetesServiceEndpoints,
  rewriteBody,
  rewriteDocument,
  rewriteObject,
  rewriteWatchLine,
} from "./kubernetes_endpoints.ts";
import { answerRewriteFor } from "./answer_rewrite.ts";
import { parseRequestInfo } from "../request/request_info.ts";
import { parseServiceEndpoint, resolveKubernetesService } from "../config/kubernetes_service_config.ts";
import { ConfigError } from "../config/errors.ts";
import type { Identity } from "../identity/identity.ts";

// deno-lint-ignore no-explicit-any
type Any = any;
const epIps = (o: Any) => o.subsets.flatMap((x: Any) => x.addresses.map((a: Any) => a.ip));
const TESTDATA = new URL("../../tests/testdata/k8s", import.meta.url).pathname;
const to = { ip: "192.168.1.10", port: 51003 };

/** Real serializer output (every field filled), renamed to be the kubernetes Service's. */
function realEndpoints(): Any {
  const o = JSON.parse(Deno.readTextFileSync(`${TESTDATA}/core.v1.Endpoints.json`));
  o.metadata.name = "kubernetes";
  o.metadata.namespace = "default";
  return o;
}
function realSlice(): Any {
  const o = JSON.parse(Deno.readTextFileSync(`${TESTDATA}/discovery.k8s.io.v1.EndpointSlice.json`));
  o.metadata.name = "kubernetes";
  o.metadata.namespace = "default";
  o.metadata.labels["kubernetes.io/service-name"] = "kubernetes";
  o.addressType = "IPv4";
  return o;
}

Deno.test("rewrite: the kubernetes Endpoints get the node address and port, port names kept", () => {
  const out = rewriteObject(realEndpoints(), to) as Any;
  assertEquals(out.subsets, [{
    addresses: [{ ip: "192.168.1.10" }],
    ports: [{ name: "nameValue", port: 51003, protocol: "protocolValue", appProtocol: "appProtocolValue" }],
  }]);
  assertEquals(out.metadata, realEndpoints().metadata);
});

Deno.test("rewrite: the kubernetes EndpointSlice gets one ready endpoint; the other family's is emptied", () => {
  const out = rewriteObject(realSlice(), to) as Any;
  assertEquals(out.endpoints, [{
    addresses: ["192.168.1.10"],
    conditions: { ready: true, serving: true, terminating: false },
  }]);
  assertEquals(out.ports.map((p: Any) => [p.name, p.port]), [["nameValue", 51003]]);
  const v6 = { ...realSlice(), addressType: "IPv6" };
  assertEquals((rewriteObject(v6, to) as Any).endpoints, []);
  const onV6 = rewriteObject(v6, { ip: "fd00::10", port: 51003 }) as Any;
  assertEquals(onV6.endpoints[0].addresses, ["fd00::10"]);
});

Deno.test("rewrite: only the kubernetes Service's objects are touched", () => {
  const other = { ...realEndpoints(), metadata: { ...realEndpoints().metadata, namespace: "kube-system" } };
  equal(rewriteObject(other, to), other);
  const otherName = { ...realEndpoints(), metadata: { ...realEndpoints().metadata, name: "kubernetes-x" } };
  equal(rewriteObject(otherName, to), otherName);
  const slice = realSlice();
  slice.metadata.labels["kubernetes.io/service-name"] = "nginx";
  equal(rewriteObject(slice, to), slice);
  equal(
    isKubernetesServiceEndpoints({
      kind: "ConfigMap",
      metadata: { name: "kubernetes", namespace: "default" },
    }),
    false,
  );
});

Deno.test("rewrite: lists (items without kind) keep their shape; other items untouched", () => {
  const { kind: _k, apiVersion: _a, ...item } = realEndpoints();
  const other = {
    metadata: { name: "nginx", namespace: "default" },
    subsets: [{ addresses: [{ ip: "10.0.0.1" }] }],
  };
  const list = {
    kind: "EndpointsList",
    apiVersion: "v1",
    metadata: { resourceVersion: "9" },
    items: [item, other],
  };
  const out = rewriteDocument(list, to, "endpoints", "") as Any;
  equal(out.items[0].kind, undefined);
  assertEquals(out.items[0].subsets[0].addresses, [{ ip: "192.168.1.10" }]);
  equal(out.items[1], other);
  assertEquals(out.metadata, list.metadata);
  // As bytes: only the kubernetes item is re-encoded; every other byte is the apiserver's.
  const text = JSON.stringify({ ...list, items: [other, item, other] }, null, 1);
  const rewritten = new TextDecoder().decode(
    rewriteBody(new TextEncoder().encode(text), to, "endpoints", ""),
  );
  const at = text.lastIndexOf("\n  {", text.indexOf('"name": "kubernetes"'));
  equal(rewritten.slice(0, at), text.slice(0, at));
  const tail = text.slice(text.lastIndexOf("\n  {"));
  equal(rewritten.slice(-tail.length), tail);
  assertEquals(JSON.parse(rewritten).items.map(epIps), [["10.0.0.1"], ["192.168.1.10"], ["10.0.0.1"]]);
  // Nothing of ours in it: the very same bytes come back.
  const bytes = new TextEncoder().encode(JSON.stringify({ ...list, items: [other] }));
  equal(rewriteBody(bytes, to, "endpoints", ""), bytes);
});

Deno.test("rewrite: watch lines: ADDED/MODIFIED/DELETED rewritten, BOOKMARK and others untouched", () => {
  const ev = JSON.stringify({ type: "MODIFIED", object: realSlice() });
  const out = JSON.parse(rewriteWatchLine(ev, to, "endpointslices", ""));
  equal(out.type, "MODIFIED");
  assertEquals(out.object.endpoints[0].addresses, ["192.168.1.10"]);
  const bookmark = JSON.stringify({
    type: "BOOKMARK",
    object: { kind: "EndpointSlice", metadata: { resourceVersion: "7" } },
  });
  equal(rewriteWatchLine(bookmark, to, "endpointslices", ""), bookmark);
  const other = JSON.stringify({
    type: "ADDED",
    object: { kind: "EndpointSlice", metadata: { name: "x", namespace: "y" } },
  });
  equal(rewriteWatchLine(other, to, "endpointslices", ""), other);
  equal(rewriteWatchLine('not json "kubernetes"', to, "endpoints", ""), 'not json "kubernetes"');
});

Deno.test("rewrite: Tables: the row's cells and its object", () => {
  const table = {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: {},
    columnDefinitions: [{ name: "Name" }, { name: "Endpoints" }, { name: "Age" }],
    rows: [
      {
        cells: ["kubernetes", "192.168.50.1:6443", "5m"],
        object: { kind: "PartialObjectMetadata", metadata: { name: "kubernetes", namespace: "default" } },
      },
      {
        cells: ["nginx", "10.0.0.1:80", "5m"],
        object: { kind: "PartialObjectMetadata", metadata: { name: "nginx", namespace: "default" } },
      },
    ],
  };
  const out = rewriteDocument(table, to, "endpoints", "") as Any;
  assertEquals(out.rows[0].cells, ["kubernetes", "192.168.1.10:51003", "5m"]);
  assertEquals(out.rows[1], table.rows[1]);
  // Without objects (includeObject=None), the Name cell in a Table of the default namespace.
  const bare = { ...table, rows: table.rows.map((r) => ({ cells: r.cells })) };
  assertEquals(
    (rewriteDocument(bare, to, "endpoints", "default") as Any).rows[0].cells[1],
    "192.168.1.10:51003",
  );
  assertEquals((rewriteDocument(bare, to, "endpoints", "") as Any).rows[0].cells[1], "192.168.50.1:6443");

  const slices = {
    kind: "Table",
    columnDefinitions: [{ name: "Name" }, { name: "AddressType" }, { name: "Ports" }, { name: "Endpoints" }, {
      name: "Age",
    }],
    rows: [{ cells: ["kubernetes", "IPv4", "6443", "192.168.50.1", "1m"], object: { ...realSlice() } }],
  };
  const s = rewriteDocument(slices, to, "endpointslices", "") as Any;
  assertEquals(s.rows[0].cells, ["kubernetes", "IPv4", "51003", "192.168.1.10", "1m"]);
  assertEquals(s.rows[0].object.endpoints[0].addresses, ["192.168.1.10"]);
  // Dual stack, objects as metadata only: the IPv6 slice's row is emptied, not given an IPv4 address.
  const v6 = {
    ...slices,
    rows: [{
      cells: ["kubernetes-v6", "IPv6", "6443", "fd00::1", "1m"],
      object: {
        kind: "PartialObjectMetadata",
        metadata: {
          name: "kubernetes-v6",
          namespace: "default",
          labels: { "kubernetes.io/service-name": "kubernetes" },
        },
      },
    }],
  };
  assertEquals((rewriteDocument(v6, to, "endpointslices", "") as Any).rows[0].cells, [
    "kubernetes-v6",
    "IPv6",
    "51003",
    "<unset>",
    "1m",
  ]);
});

const kubeProxy: Identity = {
  kind: "cert",
  cn: "system:kube-proxy",
  groups: [],
  cacheId: "cn~system:kube-proxy",
};
const kubelet: Identity = {
  kind: "cert",
  cn: "system:node:edge-1",
  groups: ["system:nodes"],
  cacheId: "cn~x",
};
const token: Identity = { kind: "token", tokenHash: "abc", cacheId: "token~abc" };
const settings = { endpoint: to, proxyIdentities: new Set(["system:kube-proxy"]) };

Deno.test("answer rewrite: only kube-proxy's reads of endpoints and endpointslices that can hold ours", () => {
  const r = (id: Identity, method: string, url: string, headers = {}) =>
    answerRewriteFor(settings, id, parseRequestInfo(method, url), headers);
  notEqual(r(kubeProxy, "GET", "/api/v1/endpoints?watch=true"), undefined);
  notEqual(r(kubeProxy, "GET", "/api/v1/namespaces/default/endpoints/kubernetes"), undefined);
  notEqual(r(kubeProxy, "GET", "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=a"), undefined);
  notEqual(r(kubeProxy, "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"), undefined);
  equal(r(kubeProxy, "GET", "/api/v1/namespaces/kube-system/endpoints"), undefined);
  equal(r(kubeProxy, "GET", "/api/v1/services"), undefined);
  equal(r(kubeProxy, "PUT", "/api/v1/namespaces/default/endpoints/kubernetes"), undefined);
  equal(r(kubeProxy, "GET", "/api/v1/endpoints", { "impersonate-user": "bob" }), undefined);
  equal(r(kubelet, "GET", "/api/v1/endpoints"), undefined);
  equal(r(token, "GET", "/api/v1/endpoints"), undefined);
  equal(answerRewriteFor(undefined, kubeProxy, parseRequestInfo("GET", "/api/v1/endpoints"), {}), undefined);
});

Deno.test("answer rewrite: streams only 200 identity-encoded JSON or protobuf answers; line stream re-frames", async () => {
  const a = answerRewriteFor(settings, kubeProxy, parseRequestInfo("GET", "/api/v1/endpoints?watch=1"), {})!;
  equal(a.stream(200, { "content-type": "application/json", "content-encoding": "gzip" }), undefined);
  equal(a.stream(410, { "content-type": "application/json" }), undefined);
  equal(a.stream(200, { "content-type": "application/yaml" }), undefined);
  const t = a.stream(200, { "content-type": "application/json" })!;
  const line = JSON.stringify({ type: "ADDED", object: realEndpoints() }) + "\n";
  const out: Uint8Array[] = [];
  t.on("data", (c: Uint8Array) => out.push(c));
  const done = new Promise((r) => t.on("end", r));
  const bytes = new TextEncoder().encode(line + line);
  // Split mid-line and mid-UTF-8 boundary-free: the transform must re-frame.
  t.write(bytes.subarray(0, 100));
  t.write(bytes.subarray(100, line.length + 7));
  t.end(bytes.subarray(line.length + 7));
  await done;
  const text = new TextDecoder().decode(Buffer.concat(out));
  const lines = text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
  equal(lines.length, 2);
  for (const l of lines) assertEquals(l.object.subsets[0].addresses, [{ ip: "192.168.1.10" }]);
});

Deno.test("config: auto is on only with a node address; on without one is refused; off is off", () => {
  const raw = { proxyIdentities: [] };
  equal(resolveKubernetesService(raw, ["127.0.0.1"]).rewrite, false);
  equal(resolveKubernetesService(raw, ["0.0.0.0"]).rewrite, false);
  const on = resolveKubernetesService(raw, ["127.0.0.1", "192.168.1.10"]);
  assertEquals([on.rewrite, on.endpointIp, on.endpointPort, on.proxyIdentities], [
    true,
    "192.168.1.10",
    undefined,
    [
      "system:kube-proxy",
    ],
  ]);
  const explicit = resolveKubernetesService({ ...raw, endpoint: "127.0.0.2:6443" }, ["127.0.0.1"]);
  assertEquals([explicit.rewrite, explicit.endpointIp, explicit.endpointPort], [true, "127.0.0.2", 6443]);
  equal(resolveKubernetesService({ ...raw, mode: "off" }, ["192.168.1.10"]).rewrite, false);
  assertThrows(() => resolveKubernetesService({ ...raw, mode: "on" }, ["127.0.0.1"]), ConfigError);
  assertThrows(() => resolveKubernetesService({ ...raw, mode: "maybe" }, ["127.0.0.1"]), ConfigError);
  assertEquals(parseServiceEndpoint("[fd00::1]:443"), { ip: "fd00::1", port: 443 });
  assertEquals(parseServiceEndpoint("fd00::1"), { ip: "fd00::1" });
  assertThrows(() => parseServiceEndpoint("10.0.0.1:99999"), ConfigError);
  assertThrows(() => parseServiceEndpoint("0.0.0.0:443"), ConfigError);
  assertThrows(() => parseServiceEndpoint("node-1:443"), ConfigError);
});
