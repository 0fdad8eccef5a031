/**
 * What stays in memory after lite-apiserver proxies and caches a large list: Deno.memoryUsage()
 * (after a full GC through the inspector) idle, after a 5,000-pod list once the cache has written
 * it, and a heap snapshot's largest ArrayBuffer backing stores with the path that retains each.
 * Usage: `deno run -A bench/list_memory.ts [pods=5000] [sqlite|file] [h1|h2] [main.ts]`
 */
import {
  eventually,
  freePort,
  httpsClient,
  SOURCE_LAUNCH_ARGS,
  startCluster,
  startLite,
  TOKENS,
} from "../tests/support/harness.ts";
import { benchPod } from "./pods.ts";

const PODS = Number(Deno.args[0] ?? 5000);
const backend = (Deno.args[1] ?? "sqlite") as "sqlite" | "file";
const h2 = (Deno.args[2] ?? "h2") === "h2";
const main = Deno.args[3] ?? new URL("../main.ts", import.meta.url).pathname;
const TOKEN = Object.keys(TOKENS).find((t) => t === "admin-token")!;

const cluster = await startCluster({ http2: h2 ? { maxStreams: 1000 } : false });
cluster.apiserver.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "big" } });
for (let i = 0; i < PODS; i++) cluster.apiserver.create(benchPod("big", i));
const inspectPort = freePort();
const lite = await startLite(cluster, {
  backend,
  env: { MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_TRIM_THRESHOLD_: "131072" },
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
let chunks: string[] = [];
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.method === "HeapProfiler.addHeapSnapshotChunk") return void chunks.push(m.params.chunk);
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
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
/** /proc/<pid>/smaps_rollup: anonymous memory (heap, malloc arenas) of lite-apiserver. */
const anonymous = () =>
  Number(/^Anonymous:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${lite.child.pid}/smaps_rollup`))?.[1]) *
  1024;
async function memory(label: string) {
  const usage = async () =>
    JSON.parse(
      (await cdp("Runtime.evaluate", { expression: "JSON.stringify(Deno.memoryUsage())" })).result.value,
    );
  const line = (m: Record<string, number>) =>
    `rss ${mib(m.rss)} (anonymous ${mib(anonymous())}), V8 heap used ${mib(m.heapUsed)} of ${
      mib(m.heapTotal)
    }, external ${mib(m.external)}`;
  console.log(`${label}, as left: ${line(await usage())}`);
  await cdp("HeapProfiler.collectGarbage");
  console.log(`${label}, after a full GC: ${line(await usage())}`);
}
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${lite.adminUrl}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
}

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}
/** The largest ArrayBuffer backing stores and, for each, a retainer path to a named holder. */
function largestBuffers(s: Snapshot, top = 12) {
  const nf = s.snapshot.meta.node_fields.length;
  const ef = s.snapshot.meta.edge_fields.length;
  const [typeI, nameI, , sizeI, edgeCountI] = ["type", "name", "id", "self_size", "edge_count"]
    .map((f) => s.snapshot.meta.node_fields.indexOf(f));
  const nodeTypes = s.snapshot.meta.node_types[0];
  const edgeTypes = s.snapshot.meta.edge_types[0];
  const eType = s.snapshot.meta.edge_fields.indexOf("type");
  const eName = s.snapshot.meta.edge_fields.indexOf("name_or_index");
  const eTo = s.snapshot.meta.edge_fields.indexOf("to_node");
  const count = s.nodes.length / nf;
  const retainer = new Int32Array(count).fill(-1);
  const retainerEdge = new Array<string>(count);
  let e = 0;
  for (let n = 0; n < count; n++) {
    const edges = s.nodes[n * nf + edgeCountI];
    for (let k = 0; k < edges; k++, e += ef) {
      const t = edgeTypes[s.edges[e + eType]];
      if (t === "weak" || t === "shortcut") continue;
      const to = s.edges[e + eTo] / nf;
      if (retainer[to] === -1) {
        retainer[to] = n;
        const nm = s.edges[e + eName];
        retainerEdge[to] = t === "element" || t === "hidden" ? `[${nm}]` : String(s.strings[nm]);
      }
    }
  }
  const name = (n: number) => `${nodeTypes[s.nodes[n * nf + typeI]]}:${s.strings[s.nodes[n * nf + nameI]]}`;
  const bufs: number[] = [];
  let total = 0;
  for (let n = 0; n < count; n++) {
    const nm = s.strings[s.nodes[n * nf + nameI]];
    if (nm === "system / JSArrayBufferData" || nm === "system / BackingStore") {
      bufs.push(n);
      total += s.nodes[n * nf + sizeI];
    }
  }
  console.log(`${bufs.length} backing stores, ${mib(total)} in all`);
  bufs.sort((a, b) => s.nodes[b * nf + sizeI] - s.nodes[a * nf + sizeI]);
  for (const b of bufs.slice(0, top)) {
    const path: string[] = [];
    for (let n = b, i = 0; n !== -1 && i < 10; n = retainer[n], i++) {
      path.push(`${name(n).slice(0, 60)}${retainerEdge[n] ? ` .${retainerEdge[n].slice(0, 40)}` : ""}`);
    }
    console.log(`  ${(s.nodes[b * nf + sizeI] / 1024).toFixed(0).padStart(7)} KiB  ${path.join(" < ")}`);
  }
}

const client = httpsClient(lite.url, await Deno.readTextFile(cluster.pki.caCert), { token: TOKEN });
try {
  await memory("idle");
  const { status, body } = await client.json("/api/v1/namespaces/big/pods");
  if (status !== 200 || (body.items as unknown[]).length !== PODS) throw new Error(`list: ${status}`);
  await eventually(
    async () => await metric("lite_apiserver_write_queue_bytes") === 0,
    "write queue drained (its last batch written)",
  );
  await new Promise((r) => setTimeout(r, 1500)); // lib/http/reclaim.ts runs 0.5 s after a large answer
  await memory(`after a ${PODS}-pod list, cache written`);
  // What of the rest is glibc's: freed memory malloc holds in its arenas (fragmentation).
  await cdp("Runtime.evaluate", {
    expression:
      `Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } }).symbols.malloc_trim(0)`,
  });
  await memory("then malloc_trim(0)");
  // What the client's connection holds: close it.
  client.close();
  await new Promise((r) => setTimeout(r, 1000));
  await memory("client connection closed");
  chunks = [];
  await cdp("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  largestBuffers(JSON.parse(chunks.join("")));
} finally {
  client.close();
  ws.close();
  await lite.kill();
  await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
  await cluster.close();
}
