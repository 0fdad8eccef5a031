/**
 * The admin listener's exposure: /healthz and /readyz are always open; cached identities appear in
 * /status and /metrics only when the operator chose so; a non-loopback admin address is refused
 * unless that choice is made explicitly; token hashes never appear.
 */
import assert from "node:assert/strict";
import { type Cluster, httpsClient, runLite, startCluster, startLite } from "./support/harness.ts";

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

Deno.test("a non-loopback --admin-address needs an explicit --admin-identities", async () => {
  const cluster: Cluster = await startCluster();
  try {
    // 10.x is never bound: the configuration is refused before any listener starts.
    const p = runLite([
      "serve",
      "--kube-apiserver-url",
      cluster.apiserver.url,
      "--ca-file",
      cluster.pki.caCert,
      "--tls-cert-file",
      cluster.serving.cert,
      "--tls-private-key-file",
      cluster.serving.key,
      "--port",
      "0",
      "--admin-address",
      "10.1.2.3",
    ]);
    const status = await p.status;
    assert.notEqual(status.code, 0);
    const out = p.lines.filter((l) => l.trim() !== "");
    assert.equal(out.length, 1, out.join("\n"));
    assert.match(
      out[0],
      /--admin-address 10\.1\.2\.3 is not a loopback address.*--admin-identities hide or show/,
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("--admin-identities hide: health stays open, no identity in /status or /metrics", async () => {
  const cluster: Cluster = await startCluster();
  const lite = await startLite(cluster, { extra: ["--admin-identities", "hide"] });
  try {
    const kubelet = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    const reader = httpsClient(lite.url, cluster.pki.caPem, { token: "reader-token" });
    try {
      for (const c of [kubelet, reader]) {
        const r = await c.request("/api/v1/namespaces/default/configmaps/app-config");
        assert.equal(r.status, 200);
        await r.body?.cancel();
      }
    } finally {
      kubelet.close();
      reader.close();
    }
    const admin = lite.adminUrl!;
    assert.equal((await get(`${admin}/healthz`)).status, 200);
    assert.equal((await get(`${admin}/readyz`)).status, 200);
    // Both writes land before the status walk looks: wait for the rows, bounded.
    const deadline = Date.now() + 15_000;
    let status = "";
    while (Date.now() < deadline) {
      status = (await get(`${admin}/status`)).text;
      const rows = JSON.parse(status).cache?.identities?.map((r: { identity: string }) => r.identity) ?? [];
      if (rows.includes("cn~*") && rows.includes("token~*")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const rows = JSON.parse(status).cache.identities.map((r: { identity: string }) => r.identity);
    assert.deepEqual(rows.sort(), ["cn~*", "token~*"], status);
    assert.doesNotMatch(status, /system:node|edge-1|kubelet-client|token~[0-9a-f]/);
    const metrics = (await get(`${admin}/metrics`)).text;
    assert.doesNotMatch(metrics, /system:node|edge-1/);
    assert.match(metrics, /^lite_apiserver_client_cert_expiry_seconds\{cn="#1"\} \d+$/m);
  } finally {
    await lite.kill();
    await cluster.close();
  }
});
