/**
 * The kube-proxy rewrite on protobuf, against real wire bytes from Kubernetes' serializers
 * (tests/testdata/k8s), renamed to be the kubernetes Service's objects.
 */
import { deepStrictEqual as assertEquals, equal } from "node:assert/strict";
import { bytesField, concatBytes, K8S_MAGIC, readFields, stringField } from "../protobuf/wire.ts";
import { envelope, ours } from "../../tests/support/k8s_protobuf.ts";
import { rewriteProtobufBody, rewriteProtobufWatchEvent } from "./kubernetes_endpoints_protobuf.ts";
import { answerRewriteFor } from "./answer_rewrite.ts";
import { parseRequestInfo } from "../request/request_info.ts";

const DATA = new URL("../../tests/testdata/k8s/", import.meta.url);
const to = { ip: "192.168.1.10", port: 51003 };

const sub = (data: Uint8Array, n: number) =>
  readFields(data).filter((f) => f.field === n).map((f) => f.data!);
const varint = (data: Uint8Array, n: number) => readFields(data).find((f) => f.field === n)?.value;
const str = (data: Uint8Array, n: number) => stringField(readFields(data), n);

Deno.test("protobuf: the kubernetes Endpoints get the node address and port; metadata bytes kept", async () => {
  const body = await ours("core.v1.Endpoints");
  const out = rewriteProtobufBody(body, to);
  const before = envelope(body).raw;
  const raw = envelope(out).raw;
  assertEquals(sub(raw, 1), sub(before, 1), "metadata copied byte for byte");
  const subsets = sub(raw, 2);
  equal(subsets.length, 1);
  assertEquals(sub(subsets[0], 1).map((a) => str(a, 1)), ["192.168.1.10"]);
  assertEquals(sub(subsets[0], 2), [], "no notReadyAddresses");
  const ports = sub(subsets[0], 3);
  assertEquals(ports.map((p) => [str(p, 1), varint(p, 2), str(p, 3), str(p, 4)]), [
    ["nameValue", 51003n, "protocolValue", "appProtocolValue"],
  ]);
  // The envelope's other fields (typeMeta...) are unchanged.
  assertEquals(
    readFields(out.subarray(4)).filter((f) => f.field !== 2).map((f) => f.bytes),
    readFields(body.subarray(4)).filter((f) => f.field !== 2).map((f) => f.bytes),
  );
});

Deno.test("protobuf: the kubernetes EndpointSlice: one ready endpoint of its family; other family emptied", async () => {
  const raw = envelope(rewriteProtobufBody(await ours("discovery.k8s.io.v1.EndpointSlice", "IPv4"), to)).raw;
  const eps = sub(raw, 2);
  equal(eps.length, 1);
  assertEquals(sub(eps[0], 1).map((a) => new TextDecoder().decode(a)), ["192.168.1.10"]);
  const cond = sub(eps[0], 2)[0];
  assertEquals([varint(cond, 1), varint(cond, 2), varint(cond, 3)], [1n, 1n, 0n]);
  assertEquals(sub(raw, 3).map((p) => [str(p, 1), str(p, 2), varint(p, 3)]), [[
    "nameValue",
    "protocolValue",
    51003n,
  ]]);
  equal(str(raw, 4), "IPv4");
  const v6 = envelope(rewriteProtobufBody(await ours("discovery.k8s.io.v1.EndpointSlice", "IPv6"), to)).raw;
  assertEquals(sub(v6, 2), []);
});

Deno.test("protobuf: anything else comes back as the very same bytes", async () => {
  for (
    const type of ["core.v1.Endpoints", "discovery.k8s.io.v1.EndpointSlice"]
  ) {
    const body = await Deno.readFile(new URL(`${type}.pb`, DATA));
    equal(rewriteProtobufBody(body, to), body, type);
  }
  const junk = new Uint8Array([0x6b, 0x38, 0x73, 0, 0x12, 0x7f]);
  equal(rewriteProtobufBody(junk, to), junk);
});

Deno.test("protobuf: lists rewrite only the kubernetes item; watch frames are re-framed", async () => {
  const mine = envelope(await ours("core.v1.Endpoints")).raw;
  const other = envelope(await Deno.readFile(new URL("core.v1.Endpoints.pb", DATA))).raw;
  const typeMeta = bytesField(1, concatBytes([bytesField(1, "v1"), bytesField(2, "EndpointsList")]));
  const list = concatBytes([
    K8S_MAGIC,
    typeMeta,
    bytesField(
      2,
      concatBytes([bytesField(1, bytesField(2, "77")), bytesField(2, other), bytesField(2, mine)]),
    ),
  ]);
  const items = sub(envelope(rewriteProtobufBody(list, to)).raw, 2);
  assertEquals(items[0], other);
  assertEquals(sub(sub(items[1], 2)[0], 1).map((a) => str(a, 1)), ["192.168.1.10"]);

  // A watch stream as the apiserver frames it: length + WatchEvent{type, object{raw: enveloped}}.
  const event = (body: Uint8Array) =>
    concatBytes([bytesField(1, "MODIFIED"), bytesField(2, bytesField(1, body))]);
  const ev = event(await ours("core.v1.Endpoints"));
  const rewritten = rewriteProtobufWatchEvent(ev, to);
  equal(str(rewritten, 1), "MODIFIED");
  const inner = sub(sub(rewritten, 2)[0], 1)[0];
  assertEquals(sub(sub(envelope(inner).raw, 2)[0], 1).map((a) => str(a, 1)), ["192.168.1.10"]);
  const untouched = event(await Deno.readFile(new URL("core.v1.Endpoints.pb", DATA)));
  equal(rewriteProtobufWatchEvent(untouched, to), untouched);

  const a = answerRewriteFor(
    { endpoint: to, proxyIdentities: new Set(["system:kube-proxy"]) },
    { kind: "cert", cn: "system:kube-proxy", groups: [], cacheId: "cn~system:kube-proxy" },
    parseRequestInfo("GET", "/api/v1/endpoints?watch=1"),
    {},
  )!;
  const t = a.stream(200, { "content-type": "application/vnd.kubernetes.protobuf;stream=watch" })!;
  const frame = (p: Uint8Array) => {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, p.byteLength);
    return concatBytes([head, p]);
  };
  const stream = concatBytes([frame(untouched), frame(ev)]);
  const out: Uint8Array[] = [];
  t.on("data", (c: Uint8Array) => out.push(c));
  const done = new Promise((r) => t.on("end", r));
  // Split inside a length prefix and inside a payload.
  t.write(stream.subarray(0, 2));
  t.write(stream.subarray(2, untouched.byteLength + 6));
  t.end(stream.subarray(untouched.byteLength + 6));
  await done;
  const got = concatBytes(out);
  const view = new DataView(got.buffer, got.byteOffset);
  const first = view.getUint32(0);
  assertEquals(got.subarray(4, 4 + first), untouched);
  const second = got.subarray(8 + first, 8 + first + view.getUint32(4 + first));
  assertEquals(second, rewritten);
  equal(got.byteLength, 8 + first + rewritten.byteLength);
});
