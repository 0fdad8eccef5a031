/**
 * Memory under a hostile watch line: an upstream sends one watch event of N MB without a newline
 * (default 179 MB, the size that took RSS to 1.73 GB before the line bound), then a small event.
 * Reports lite-apiserver's RSS before, its peak (VmHWM) and after, the bytes relayed to the watch
 * client, and the worst latency another client saw meanwhile.
 *
 *   ./scripts/deno run -A bench/watch_line_rss.ts [MB] [path/to/repo/root]
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import { createPki } from "../tests/support/pki.ts";
import { ROOT } from "../tests/support/harness.ts";

const MB = Number(Deno.args[0] ?? 179);
const root = Deno.args[1] ?? ROOT;
const pki = await createPki();
const api = await pki.server("apiserver");
const serving = await pki.server("lite-apiserver");
const chunk = new TextEncoder().encode("a".repeat(1 << 20));

const upstream = https.createServer({
  cert: await Deno.readTextFile(api.cert),
  key: await Deno.readTextFile(api.key),
}, (req, res) => {
  const url = new URL(req.url ?? "/", "https://x");
  if (url.pathname === "/readyz" || url.pathname === "/version") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end('{"ok":true}');
  }
  if (url.searchParams.get("watch") !== "1" && url.searchParams.get("watch") !== "true") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(
      '{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}',
    );
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.write(
    '{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big",' +
      '"namespace":"default","resourceVersion":"2"},"data":{"x":"',
  );
  let sent = 0;
  const pump = () => {
    while (sent < MB) {
      sent++;
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
    res.end(
      '"}}}\n{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"small","namespace":"default",' +
        '"resourceVersion":"3"}}}\n',
    );
  };
  pump();
});
await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
const upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
const cacheDir = await Deno.makeTempDir({ prefix: "bench-line-" });

const args = [
  "serve",
  "--kube-apiserver-url",
  upstreamUrl,
  "--ca-file",
  pki.caCert,
  "--tls-cert-file",
  serving.cert,
  "--tls-private-key-file",
  serving.key,
  "--port",
  "0",
  "--admin-port",
  "0",
  "--cache-dir",
  cacheDir,
  ...(Deno.env.get("BENCH_LITE_FLAGS")?.split(" ").filter(Boolean) ?? []),
];
const proc = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", "--quiet", `${root}/main.ts`, ...args],
  stdout: "null",
  stderr: "piped",
}).spawn();
const logs: string[] = [];
const port = await (async () => {
  const reader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const listening = /listening on https:\/\/\S+?:(\d+)/;
  while (!listening.test(buf)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`lite-apiserver exited:\n${buf}`);
    buf += value;
  }
  (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) logs.push(r.value);
  })();
  return Number(listening.exec(buf)![1]);
})();

function mem(): { rss: number; hwm: number } {
  const s = Deno.readTextFileSync(`/proc/${proc.pid}/status`);
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

const client = Deno.createHttpClient({ caCerts: [pki.caPem], http2: false });
const base = `https://127.0.0.1:${port}`;
const list = await fetch(`${base}/api/v1/namespaces/default/configmaps`, { client });
await list.text();
const before = mem();
let worstMs = 0;
let probing = true;
const probes = (async () => {
  const c = Deno.createHttpClient({ caCerts: [pki.caPem], http2: false });
  while (probing) {
    const t0 = performance.now();
    await (await fetch(`${base}/version`, { client: c })).text();
    worstMs = Math.max(worstMs, performance.now() - t0);
    await new Promise((r) => setTimeout(r, 100));
  }
  c.close();
})();
const t0 = performance.now();
const watch = await fetch(`${base}/api/v1/namespaces/default/configmaps?watch=1`, {
  client,
  headers: Deno.env.get("BENCH_ACCEPT") ? { accept: Deno.env.get("BENCH_ACCEPT")! } : {},
});
let relayed = 0;
for await (const c of watch.body!) relayed += c.byteLength;
const seconds = (performance.now() - t0) / 1000;
probing = false;
await probes;
await new Promise((r) => setTimeout(r, 2000));
const after = mem();
client.close();
proc.kill("SIGTERM");
await proc.status;
upstream.close();
await Deno.remove(cacheDir, { recursive: true });
await Deno.remove(pki.dir, { recursive: true });
const f = (b: number) => `${Math.round(b / (1 << 20))} MB`;
const warned = logs.join("").match(/WARN .*watch.*/)?.[0] ?? "(no watch warning)";
console.log(
  `${root}: ${MB} MB watch line: relayed ${f(relayed)} in ${seconds.toFixed(1)} s; ` +
    `RSS before ${f(before.rss)}, peak ${f(after.hwm)}, after ${f(after.rss)}; ` +
    `worst /version latency meanwhile ${Math.round(worstMs)} ms\n  ${warned}`,
);
