/**
 * What a proxied small GET allocates, by allocation site: lite-apiserver (release V8 flags) behind an
 * nginx upstream, V8's sampling heap profiler on (through the inspector) counting every sampled
 * allocation, collected or not, during one wrk run; prints bytes per request for the top sites.
 * Allocation drives GC, a large share of the CPU per request.
 * The upstream offers h2 (as kube-apiserver does) unless `--cloud=h1`.
 * Usage: `deno run -A bench/alloc_profile.ts [seconds] [connections] [main.ts] [--cloud=h1]`
 */
import { freePort, SOURCE_LAUNCH_ARGS, startCluster, startLite, TOKENS } from "../tests/support/harness.ts";
import { benchPod } from "./pods.ts";
import { startNginxUpstream, wrk } from "./tools.ts";

const H2 = !Deno.args.includes("--cloud=h1");
const args = Deno.args.filter((a) => !a.startsWith("--"));
const SECONDS = Number(args[0] ?? 4);
const CONNECTIONS = Number(args[1] ?? 8);
const main = args[2] ?? new URL("../main.ts", import.meta.url).pathname;
const TOKEN = Object.keys(TOKENS).find((t) => t === "admin-token")!;
const POD_GET = `/api/v1/namespaces/default/pods/${
  (benchPod("default", 0).metadata as { name: string }).name
}`;

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const cluster = await startCluster();
const upstream = await startNginxUpstream({
  port: freePort(),
  cert: cluster.serving.cert,
  key: cluster.serving.key,
  body: JSON.stringify(benchPod("default", 0)),
  http2: H2,
});
const inspectPort = freePort();
const lite = await startLite(cluster, {
  upstream: upstream.url,
  extra: ["--health-check-interval", "1s", "--health-check-failures", "3"],
  launcher: {
    cmd: Deno.execPath(),
    args: [...SOURCE_LAUNCH_ARGS, `--inspect=127.0.0.1:${inspectPort}`, main],
    entry: false,
  },
});
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
const cdp = <T>(method: string, params: unknown = {}) =>
  new Promise<T>((r) => {
    const id = ++seq;
    waiting.set(id, r as (v: unknown) => void);
    ws.send(JSON.stringify({ id, method, params }));
  });
try {
  await wrk(lite.url + POD_GET, { connections: CONNECTIONS, seconds: 2, token: TOKEN });
  await cdp("HeapProfiler.startSampling", {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const w = await wrk(lite.url + POD_GET, { connections: CONNECTIONS, seconds: SECONDS, token: TOKEN });
  const { profile } = await cdp<{ profile: { head: Node } }>("HeapProfiler.stopSampling");
  const bySite = new Map<string, number>();
  const byFn = new Map<string, number>();
  const walk = (n: Node, stack: string[]) => {
    const f = n.callFrame;
    const here = `${f.functionName || "(anon)"} ${f.url.replace(/^.*\/(lib|ext|node)\//, "$1/")}:${
      f.lineNumber + 1
    }`;
    const st = [...stack, here];
    if (n.selfSize) {
      const key = st.slice(-3).reverse().join(" < ");
      bySite.set(key, (bySite.get(key) ?? 0) + n.selfSize);
      const own = st.slice().reverse().find((s) => / lib\//.test(s)) ?? here;
      byFn.set(own, (byFn.get(own) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, st);
  };
  walk(profile.head, []);
  const total = [...bySite.values()].reduce((a, b) => a + b, 0);
  console.log(
    `${w.requests} requests: ${(total / w.requests).toFixed(0)} bytes allocated per request (sampled)`,
  );
  console.log("by the nearest lib/ frame:");
  for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    console.log(`  ${(v / w.requests).toFixed(0).padStart(6)} B  ${k}`);
  }
  console.log("top sites:");
  for (const [k, v] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${(v / w.requests).toFixed(0).padStart(6)} B  ${k.slice(0, 200)}`);
  }
} finally {
  ws.close();
  await lite.kill();
  await upstream.close();
  await cluster.close();
}
