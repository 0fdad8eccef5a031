/**
 * In-cluster clients, protobuf: a client of kube-proxy's identity that accepts only protobuf gets the
 * kubernetes Endpoints rewritten through the real process, as an object and in a watch stream. The
 * upstream is a stub serving real serializer bytes (the simulated apiserver answers JSON only);
 * kubelet gets those bytes untouched.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { ServerResponse } from "node:http";
import { httpsClient, startCluster, startLite } from "./support/harness.ts";
import { envelope, frame, ours, watchEvent } from "./support/k8s_protobuf.ts";
import { readFields, stringField } from "../lib/protobuf/wire.ts";

const PROTOBUF = "application/vnd.kubernetes.protobuf";
const NODE_IP = "127.0.0.2";

const sub = (data: Uint8Array, n: number) =>
  readFields(data).filter((f) => f.field === n).map((f) => f.data!);
/** The IPs of an enveloped Endpoints' subsets. */
const addresses = (body: Uint8Array) =>
  sub(envelope(body).raw, 2).flatMap((s) => sub(s, 1).map((a) => stringField(readFields(a), 1)));

Deno.test("in-cluster clients: protobuf-only answers are rewritten too (object and watch frames)", async () => {
  await using cluster = await startCluster();
  const kubeProxy = await cluster.pki.client("system:kube-proxy", [], { name: "kube-proxy-client" });
  await Deno.writeTextFile(
    cluster.tlsConfigFile,
    JSON.stringify([
      { cert: cluster.kubelet.combined, key: cluster.kubelet.combined },
      { cert: kubeProxy.combined, key: kubeProxy.combined },
    ]),
  );
  const endpoints = await ours("core.v1.Endpoints");
  const upstreamIps = addresses(endpoints);
  const stubPair = await cluster.pki.server("stub-apiserver");
  const watches = new Set<ServerResponse>();
  const stub = https.createServer({ cert: stubPair.certPem, key: stubPair.keyPem }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://stub");
    if (url.pathname === "/readyz") return res.end("ok");
    if (
      url.pathname === "/api/v1/namespaces/default/endpoints/kubernetes" && req.headers.accept === PROTOBUF
    ) {
      res.writeHead(200, { "content-type": PROTOBUF, "content-length": endpoints.byteLength });
      return res.end(endpoints);
    }
    if (url.pathname === "/api/v1/endpoints" && url.searchParams.get("watch") === "1") {
      res.writeHead(200, { "content-type": `${PROTOBUF};stream=watch`, "transfer-encoding": "chunked" });
      const stream = frame(watchEvent("MODIFIED", endpoints));
      // Split inside the length prefix and inside the payload, as TCP may.
      res.write(stream.subarray(0, 2));
      res.write(stream.subarray(2, 100));
      res.write(stream.subarray(100));
      watches.add(res);
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}');
  });
  await new Promise<void>((r) => stub.listen(0, "127.0.0.1", () => r()));
  const stubUrl = `https://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  const lite = await startLite(cluster, {
    upstream: stubUrl,
    extra: ["--kubernetes-service-endpoint", NODE_IP, "--kubernetes-service-ip", "10.96.0.1"],
  });
  const kp = httpsClient(lite.url, cluster.pki.caPem, { pair: kubeProxy });
  const kl = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
  try {
    const path = "/api/v1/namespaces/default/endpoints/kubernetes";
    const mine = await kp.request(path, { headers: { accept: PROTOBUF } });
    assertEquals([mine.status, mine.headers.get("content-type")], [200, PROTOBUF]);
    assertEquals(addresses(new Uint8Array(await mine.arrayBuffer())), [NODE_IP]);
    const truth = await kl.request(path, { headers: { accept: PROTOBUF } });
    assertEquals(new Uint8Array(await truth.arrayBuffer()), endpoints, "kubelet gets the bytes as sent");
    assert(upstreamIps.length > 0 && !upstreamIps.includes(NODE_IP));

    const w = await kp.request("/api/v1/endpoints?watch=1", { headers: { accept: PROTOBUF } });
    assertEquals(w.status, 200);
    const reader = w.body!.getReader();
    let got = new Uint8Array(0);
    const deadline = Date.now() + 20_000;
    while (got.byteLength < 4 || got.byteLength < 4 + new DataView(got.buffer).getUint32(0)) {
      assert(Date.now() < deadline, "a whole watch frame within 20 s");
      const { value, done } = await reader.read();
      assert(!done, "the watch stays open");
      const joined = new Uint8Array(got.byteLength + value!.byteLength);
      joined.set(got);
      joined.set(value!, got.byteLength);
      got = joined;
    }
    await reader.cancel();
    const payload = got.subarray(4, 4 + new DataView(got.buffer).getUint32(0));
    assertEquals(stringField(readFields(payload), 1), "MODIFIED");
    const object = sub(sub(payload, 2)[0], 1)[0];
    assertEquals(addresses(object), [NODE_IP]);
  } finally {
    kp.close();
    kl.close();
    await lite.kill();
    for (const res of watches) res.destroy();
    stub.closeAllConnections();
    await new Promise((r) => stub.close(r));
  }
});
