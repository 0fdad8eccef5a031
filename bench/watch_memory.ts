/**
 * Where the memory of an open watch goes: RSS (and the V8 heap, from a heap snapshot count when
 * --heap) of lite-apiserver per idle TLS connection, per idle keep-alive connection that made one
 * GET, and per relayed watch, each measured over N connections.
 * Usage: `deno run -A bench/watch_memory.ts [N] [main.ts] [extra v8 flags]`
 */
import { SOURCE_LAUNCH_ARGS, startCluster, startLite, TOKENS } from "../tests/support/harness.ts";
import { freePort } from "../tests/support/harness.ts";
import * as tls from "node:tls";

const N = Number(Deno.args[0] ?? 200);
const main = Deno.args[1];
const extraFlags = Deno.args[2];
const TOKEN = Object.keys(TOKENS).find((t) => t === "admin-token")!;
const cluster = await startCluster();
const ca = await Deno.readTextFile(cluster.pki.caCert);
const launchArgs = extraFlags
  ? SOURCE_LAUNCH_ARGS.map((a) => a.startsWith("--v8-flags=") ? `${a},${extraFlags}` : a)
  : SOURCE_LAUNCH_ARGS;
const inspectPort = freePort();
const lite = await startLite(cluster, {
  env: { MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_TRIM_THRESHOLD_: "131072" },
  launcher: {
    cmd: Deno.execPath(),
    args: [
      ...launchArgs,
      `--inspect=127.0.0.1:${inspectPort}`,
      main ?? new URL("../main.ts", import.meta.url).pathname,
    ],
    entry: false,
  },
});
const port = lite.port;
// The inspector: a full GC, then Deno.memoryUsage() (rss, V8 heap used, external buffers).
const target = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json())[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((r) => ws.onopen = r);
let seq = 0;
const waiting = new Map<number, (v: unknown) => void>();
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  waiting.get(m.id)?.(m.result);
  waiting.delete(m.id);
};
const cdp = (method: string, params: unknown = {}) =>
  // deno-lint-ignore no-explicit-any
  new Promise<any>((r) => {
    const id = ++seq;
    waiting.set(id, r);
    ws.send(JSON.stringify({ id, method, params }));
  });
interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
}
async function memory(): Promise<Mem> {
  await cdp("HeapProfiler.collectGarbage");
  const r = await cdp("Runtime.evaluate", { expression: "JSON.stringify(Deno.memoryUsage())" });
  return JSON.parse(r.result.value);
}
const per = (a: Mem, b: Mem) =>
  `RSS ${kib((b.rss - a.rss) / N)}, V8 heap ${kib((b.heapUsed - a.heapUsed) / N)}, external ${
    kib((b.external - a.external) / N)
  }`;
const sockets: tls.TLSSocket[] = [];
const connect = () =>
  new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => resolve(s));
    s.on("error", reject);
    sockets.push(s);
  });
/** Sends `req` and waits for the first `until` in the answer. */
const ask = (s: tls.TLSSocket, req: string, until: RegExp) =>
  new Promise<void>((resolve) => {
    let got = "";
    const on = (c: Uint8Array) => {
      got += new TextDecoder().decode(c);
      if (until.test(got)) {
        s.off("data", on);
        resolve();
      }
    };
    s.on("data", on);
    s.write(req);
  });
const settle = () => new Promise((r) => setTimeout(r, 500));
const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
try {
  const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`;
  // Warm-up: each path once.
  const w = await connect();
  await ask(w, get("/api/v1/namespaces/default/pods"), /\r\n\r\n[\s\S]*\}\s*$/);
  const ww = await connect();
  await ask(ww, get("/api/v1/namespaces/default/pods?watch=1&resourceVersion=0"), /\r\n\r\n/);
  await settle();
  let r0 = await memory();
  for (let i = 0; i < N; i++) await connect();
  await settle();
  let r1 = await memory();
  console.log(`idle TLS connection (handshake only): ${per(r0, r1)} each`);
  r0 = r1;
  const idle = sockets.slice(-N);
  for (const s of idle) await ask(s, get("/api/v1/namespaces/default/configmaps"), /\}\s*$/);
  await settle();
  r1 = await memory();
  console.log(`+ one proxied GET on it (keep-alive, upstream connection pooled): ${per(r0, r1)} each`);
  r0 = r1;
  const list = await new Promise<string>((resolve) => {
    let got = "";
    const s = idle[0];
    const on = (c: Uint8Array) => {
      got += new TextDecoder().decode(c);
      const m = /"resourceVersion":"(\d+)"/.exec(got);
      if (m && /\}\s*$/.test(got)) {
        s.off("data", on);
        resolve(m[1]);
      }
    };
    s.on("data", on);
    s.write(get("/api/v1/namespaces/default/pods"));
  });
  const fresh: tls.TLSSocket[] = [];
  for (let i = 0; i < N; i++) fresh.push(await connect());
  await settle();
  r1 = await memory();
  console.log(`(another ${N} idle TLS connections: ${per(r0, r1)} each)`);
  r0 = r1;
  const sampling = Deno.env.get("HEAP_SAMPLING") === "1";
  if (sampling) await cdp("HeapProfiler.startSampling", { samplingInterval: 128 });
  await Promise.all(
    fresh.map((s) =>
      ask(s, get(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${list}`), /\r\n\r\n/)
    ),
  );
  await settle();
  r1 = await memory();
  if (sampling) {
    // Live allocations made while the watches opened, by allocation site (sampled).
    const { profile } = await cdp("HeapProfiler.getSamplingProfile");
    const bySite = new Map<string, number>();
    interface Node {
      callFrame: { functionName: string; url: string; lineNumber: number };
      selfSize: number;
      children: Node[];
    }
    const walk = (n: Node, stack: string[]) => {
      const f = n.callFrame;
      const here = `${f.functionName || "(anon)"} ${f.url.replace(/^.*\/(lib|ext|node)\//, "$1/")}:${
        f.lineNumber + 1
      }`;
      const st = [...stack, here];
      if (n.selfSize) {
        const key = st.slice(-3).reverse().join(" < ");
        bySite.set(key, (bySite.get(key) ?? 0) + n.selfSize);
      }
      for (const c of n.children) walk(c, st);
    };
    walk(profile.head, []);
    const total = [...bySite.values()].reduce((a, b) => a + b, 0);
    console.log(`sampled live allocations: ${kib(total / N)} per watch; top sites:`);
    for (const [k, v] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
      console.log(`  ${(v / N).toFixed(0).padStart(6)} B  ${k.slice(0, 220)}`);
    }
  }
  console.log(`+ a relayed watch on it (its own upstream connection): ${per(r0, r1)} each`);
  console.log(`RSS now ${(r1.rss / 1048576).toFixed(1)} MiB, heap ${(r1.heapUsed / 1048576).toFixed(1)} MiB`);
} finally {
  for (const s of sockets) s.destroy();
  ws.close();
  await lite.kill();
  await cluster.close();
}
