/**
 * Local connections lite-apiserver accepts from its clients with `--http2 on` and `off`: per
 * kubectl process (get with discovery, a watch), and for W watches from one client (Deno's fetch,
 * which pools HTTP/1.1 connections and multiplexes on h2).
 *
 *   deno run -A bench/h2_listener.ts [--watches 50] [--kubectl 1.33]
 *
 * Counts come from lite's debug log line `connection` (one per accepted TLS connection, with its
 * ALPN protocol).
 */
import { parseArgs } from "node:util";
import {
  eventually,
  kubectl,
  KUBECTL_DIR,
  type LiteProcess,
  startCluster,
  startLite,
  writeKubeconfig,
} from "../tests/support/harness.ts";

const { values } = parseArgs({ options: { watches: { type: "string" }, kubectl: { type: "string" } } });
const W = Number(values.watches ?? 50);
const K = values.kubectl ?? "1.33";

function count(lite: LiteProcess, from: number): number {
  return lite.lines.slice(from).filter((l) => /\bconnection\b/.test(l) && /protocol/.test(l)).length;
}

await using cluster = await startCluster();
for (const mode of ["on", "off"]) {
  await using lite = await startLite(cluster, { extra: ["--http2", mode, "--log-level", "debug"] });
  const kc = await writeKubeconfig(
    cluster.dir,
    `bench-${mode}`,
    lite.url,
    cluster.pki.caCert,
    cluster.kubelet,
  );
  let from = lite.lines.length;
  const r = await kubectl(K, kc, ["get", "pods", "-A"]);
  if (r.code !== 0) throw new Error(r.stderr);
  const getConns = count(lite, from);
  // kubectl get -w: list then watch, until killed.
  from = lite.lines.length;
  const before = cluster.apiserver.requests.length;
  const child = new Deno.Command(`${KUBECTL_DIR}/kubectl.${K}`, {
    args: ["--kubeconfig", kc, "get", "pods", "-A", "-w"],
    stdout: "piped",
    stderr: "null",
    env: { HOME: "/tmp", KUBECACHEDIR: `/tmp/kc-${crypto.randomUUID()}` },
  }).spawn();
  await eventually(
    () => cluster.apiserver.requests.slice(before).some((q) => q.query.includes("watch=")),
    "kubectl's watch reaching the apiserver",
  );
  child.kill();
  await child.status;
  await child.stdout.cancel().catch(() => {});
  const watchConns = count(lite, from);
  // W watches from one client.
  const client = Deno.createHttpClient({
    caCerts: [cluster.pki.caPem],
    cert: cluster.kubelet.certPem,
    key: cluster.kubelet.keyPem,
    // h2 only when offered: with both, hyper dials one connection per request until it knows.
    http1: mode === "off",
    http2: mode === "on",
  });
  from = lite.lines.length;
  const ctl = new AbortController();
  const res = await Promise.all(
    Array.from(
      { length: W },
      (_, i) =>
        fetch(`${lite.url}/api/v1/namespaces/default/configmaps?watch=1&labelSelector=w%3D${i}`, {
          client,
          signal: ctl.signal,
        }),
    ),
  );
  const watchesConns = count(lite, from);
  ctl.abort();
  for (const x of res) await x.body?.cancel().catch(() => {});
  client.close();
  console.log(
    `--http2 ${mode}: kubectl ${K} get pods (with discovery): ${getConns} connections; ` +
      `kubectl get -w: ${watchConns}; ${W} watches from one client: ${watchesConns}`,
  );
}
