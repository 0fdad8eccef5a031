/**
 * Offline reboot: a cloud black-holed at start-up (TCP accepted, no TLS handshake) is known to be
 * unreachable from the first probe's handshake, so reads are served from the cache at once,
 * whatever the probe and backend timeouts; a cloud that completes the handshake but answers
 * slowly is still used. Long probe settings make the difference visible without timing anything.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { kubectl, startCluster, startLite, writeKubeconfig } from "./support/harness.ts";

/** Slow probes and a long backend timeout: only the start-up handshake rule can go offline quickly. */
const SLOW_PROBES = [
  "--backend-timeout",
  "30s",
  "--health-check-interval",
  "30s",
  "--health-check-failures",
  "2",
];

Deno.test("offline reboot: black-holed cloud → cached answers at once; slow cloud → still used", async () => {
  const cluster = await startCluster();
  const cacheDir = await Deno.makeTempDir({ prefix: "lite-cache-" });
  try {
    const primed = await startLite(cluster, { cacheDir });
    const kc = (url: string) =>
      writeKubeconfig(cluster.dir, "kubelet", url, cluster.pki.caCert, cluster.kubelet);
    const get = ["get", "configmap", "app-config", "-o", "jsonpath={.data.log\\.level}"];
    try {
      const r = await kubectl("1.33", await kc(primed.url), get);
      assertEquals([r.code, r.stdout], [0, "info"], r.stderr);
    } finally {
      await primed.kill();
    }

    // Black hole at boot: kubectl, patient for 5 s per request, gets the cached answer, although
    // neither a probe (30 s apart) nor the backend timeout (30 s) could have decided it: the
    // first probe's missing TLS handshake did.
    await cluster.apiserver.setFault("blackhole");
    const lite = await startLite(cluster, { cacheDir, extra: SLOW_PROBES });
    try {
      const r = await kubectl("1.33", await kc(lite.url), [...get, "--request-timeout=5s"]);
      assertEquals([r.code, r.stdout], [0, "info"], r.stderr);
      await lite.waitForLine(/upstream endpoint unhealthy .*no TLS handshake within/, 5_000);
      await lite.waitForLine(/upstream unreachable: offline/, 5_000);
    } finally {
      await lite.kill();
    }

    // Slow but up: handshakes complete, /readyz and reads answer after 2 s (longer than the
    // start-up connect timeout). The cloud's answer is used and the proxy never goes offline.
    await cluster.apiserver.setFault("none");
    const cm = cluster.apiserver.get("v1", "ConfigMap", "default", "app-config") as {
      data: Record<string, string>;
    };
    cluster.apiserver.update({ ...cm, data: { ...cm.data, "log.level": "warn" } });
    cluster.apiserver.setDelay(/^\/(readyz|api\/v1\/namespaces\/default\/configmaps)/, 2_000);
    await using slow = await startLite(cluster, { cacheDir, extra: SLOW_PROBES });
    try {
      const r = await kubectl("1.33", await kc(slow.url), get);
      assertEquals([r.code, r.stdout], [0, "warn"], `the slow cloud's answer: ${r.stderr}`);
      assertEquals(slow.lines.filter((l) => /upstream unreachable/.test(l)), [], "never offline");
    } finally {
      cluster.apiserver.setDelay(undefined);
    }
  } finally {
    await cluster.close();
    await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
  }
});
