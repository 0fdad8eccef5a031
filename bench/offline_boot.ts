/**
 * Offline reboot: time from launch (and from the listener being up) to the first cached answer,
 * with the cloud black-holed (packets vanish: TCP accepted, no TLS handshake) or refusing
 * connections, for both cache backends, with the default health settings.
 *
 *   ./scripts/deno run -A bench/offline_boot.ts [--runs 3]
 */
import { httpsClient, startCluster, startLite } from "../tests/support/harness.ts";

const runs = Number(Deno.args[Deno.args.indexOf("--runs") + 1]) || 3;
/** The defaults of `serve` (the harness's test settings are faster): what a node runs with. */
const DEFAULTS = ["--backend-timeout", "3s", "--health-check-interval", "2s", "--health-check-failures", "2"];
const PATH = "/api/v1/namespaces/default/configmaps/app-config";

const cluster = await startCluster();
const results: string[] = [];
try {
  for (const backend of ["sqlite", "file"] as const) {
    const cacheDir = await Deno.makeTempDir({ prefix: "bench-boot-" });
    try {
      const primed = await startLite(cluster, { backend, cacheDir, extra: DEFAULTS });
      const c = httpsClient(primed.url, cluster.pki.caPem, { pair: cluster.kubelet });
      const r = await c.request(PATH);
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`priming failed: ${r.status}`);
      c.close();
      await primed.kill();
      for (const fault of ["blackhole", "refuse"] as const) {
        for (let run = 1; run <= runs; run++) {
          await cluster.apiserver.setFault(fault);
          const t0 = performance.now();
          const lite = await startLite(cluster, { backend, cacheDir, extra: DEFAULTS });
          const up = performance.now() - t0;
          const client = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
          try {
            let first = NaN;
            const deadline = Date.now() + 30_000;
            while (Number.isNaN(first)) {
              if (Date.now() > deadline) throw new Error("no cached answer within 30 s");
              const res = await client.request(PATH);
              await res.arrayBuffer();
              if (res.status === 200 && res.headers.get("x-lite-apiserver-source") === "cache") {
                first = performance.now() - t0;
              }
            }
            const line =
              `${backend.padEnd(6)} ${fault.padEnd(9)} run ${run}: listener up ${up.toFixed(0)} ms, ` +
              `first cached answer ${first.toFixed(0)} ms after launch = ${
                (first - up).toFixed(0)
              } ms after the listener`;
            console.log(line);
            results.push(line);
          } finally {
            client.close();
            await lite.kill();
            await cluster.apiserver.setFault("none");
          }
        }
      }
    } finally {
      await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    }
  }
} finally {
  await cluster.close();
}
