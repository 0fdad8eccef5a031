/**
 * Memory with a client that stops reading while the cloud streams as fast as it can (issue 18):
 * `watch` (64 KiB events) or `list` (one large list). The client is a `Deno.connectTls` socket that
 * never reads; the cloud streams up to 512 MiB. Prints lite-apiserver's RSS before, its peak over
 * 15 s, and 10 s after the client left, with how much the cloud could send and /metrics' count.
 *
 *   ./scripts/deno run -A bench/slow_reader.ts watch|list [--main DIR] [-- LITE FLAGS...]
 *
 * `--main DIR` runs another checkout's main.ts (e.g. an export of the main branch) for comparison.
 */
import { startCluster, startLite } from "../tests/support/harness.ts";
import { startStreamUpstream } from "../tests/support/stream_upstream.ts";

const mode = Deno.args[0] === "list" ? "list" : "watch";
const mainAt = Deno.args.indexOf("--main");
const otherMain = mainAt >= 0 ? Deno.args[mainAt + 1] : undefined;
const dashes = Deno.args.indexOf("--");
const extra = dashes >= 0 ? Deno.args.slice(dashes + 1) : [];

const cluster = await startCluster();
const pair = await cluster.pki.server("stream-cloud");
const up = startStreamUpstream({
  certPem: pair.certPem,
  keyPem: pair.keyPem,
  eventBytes: 64 << 10,
  maxEvents: 8192,
  listBytes: 512 << 20,
});
const lite = await startLite(cluster, {
  upstream: up.url,
  extra,
  launcher: otherMain
    ? { cmd: Deno.execPath(), args: ["run", "-A", "--quiet", `${otherMain}/main.ts`], entry: false }
    : undefined,
});
const pid = lite.child.pid;
const rssMb = () => {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(s)![1]) / 1024);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await sleep(1000);
const before = rssMb();
const conn = await Deno.connectTls({
  hostname: "127.0.0.1",
  port: lite.port,
  caCerts: [cluster.pki.caPem],
  cert: cluster.kubelet.certPem,
  key: cluster.kubelet.keyPem,
});
const path = mode === "watch"
  ? "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1"
  : "/api/v1/namespaces/default/configmaps";
await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
let peak = before;
for (let i = 0; i < 60; i++) {
  await sleep(250);
  peak = Math.max(peak, rssMb());
}
const rec = up.records.find((r) => r.kind === mode);
conn.close();
await sleep(10_000);
const after = rssMb();
const metrics = lite.adminUrl ? await (await fetch(`${lite.adminUrl}/metrics`)).text() : "";
const slow = metrics.split("\n").filter((l) => l.startsWith("lite_apiserver_slow_readers_total{"));
console.log(JSON.stringify({
  mode,
  lite: otherMain ?? "this checkout",
  flags: extra.join(" "),
  rssMb: { before, peak, after10s: after },
  cloud: rec
    ? {
      sent: mode === "watch" ? `${rec.sent} events of 64 KiB` : `${rec.sent} bytes`,
      closedEarly: rec.closedEarly,
    }
    : "no request reached the cloud",
  slowReaders: slow,
}));
await lite.kill();
await up.close();
await cluster.close();
