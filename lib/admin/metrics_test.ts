/** The Prometheus registry and the runtime gauges, read from a real write queue. */
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { opBytes, WriteQueue } from "../cache/write_queue.ts";
import { configureLog } from "../log.ts";
import type { CacheKey, Store, WriteOp } from "../store/store.ts";
import { Counter, Gauge, Histogram, runtimeRegistry, type RuntimeSource } from "./metrics.ts";

configureLog({ level: "error", format: "text", sink: () => {} });

/** The value of `name{labels}` in Prometheus text (labels as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("counters, histograms and gauges render the text format, labels escaped", () => {
  const c = new Counter("reqs_total", "Requests.");
  c.inc({ path: 'a"b\\c\nd' });
  c.inc({ path: 'a"b\\c\nd' }, 2);
  c.inc4("get", "pods", 200, "cache");
  c.inc4("get", "pods", 200, "cache");
  assertEquals(
    c.render(),
    "# HELP reqs_total Requests.\n# TYPE reqs_total counter\n" +
      'reqs_total{path="a\\"b\\\\c\\nd"} 3\n' +
      'reqs_total{verb="get",resource="pods",code="200",source="cache"} 2\n',
  );
  assertEquals(c.get({ verb: "get", resource: "pods", code: "200", source: "cache" }), 2);

  const h = new Histogram("lat_seconds", "Latency.", [0.1, 1]);
  for (const v of [0.05, 0.5, 5]) h.observe(v);
  const text = h.render();
  assertEquals(
    [
      sample(text, 'lat_seconds_bucket{le="0.1"}'),
      sample(text, 'lat_seconds_bucket{le="1"}'),
      sample(text, 'lat_seconds_bucket{le="+Inf"}'),
      sample(text, "lat_seconds_count"),
      sample(text, "lat_seconds_sum"),
    ],
    [1, 2, 3, 3, 5.55],
  );

  let n = 7;
  const g = new Gauge("things", "Things.", () => n);
  assertMatch(g.render(), /^# TYPE things gauge\nthings 7\n$/m);
  n = 9;
  assertEquals(sample(g.render(), "things"), 9, "read at scrape time");
  const total = new Gauge("done_total", "Done.", () => [[{ kind: "a" }, 4]], "counter");
  assertMatch(total.render(), /# TYPE done_total counter\ndone_total\{kind="a"\} 4\n/);
});

const KEY: CacheKey = { identity: "anonymous", resource: "core~v1~pods", namespace: "default", name: "p" };
const put = (size: number): WriteOp => ({
  op: "putObject",
  key: KEY,
  value: { body: new Uint8Array(size), contentType: "application/json", storedAt: 0 },
});

/** A store whose writes wait until released, so the queue's state can be scraped mid-flight. */
function gatedStore() {
  const gate = Promise.withResolvers<void>();
  const applied: WriteOp[] = [];
  const store = {
    backend: "test",
    apply: async (ops: WriteOp[]) => {
      await gate.promise;
      applied.push(...ops);
    },
  } as unknown as Store;
  return { store, applied, release: () => gate.resolve() };
}

function source(q: WriteQueue, over: Partial<RuntimeSource> = {}): RuntimeSource {
  return {
    online: () => true,
    endpoints: () => [{ url: "https://a:6443", healthy: true }, { url: "https://b:6443", healthy: false }],
    backend: "sqlite",
    cacheUsage: () => ({ entries: 2, bytes: 300, items: 5 }),
    queue: () => ({
      depth: q.depth,
      bytes: q.bytes,
      dropped: q.dropped,
      written: q.written,
      failed: q.failed,
    }),
    heldWatches: () => 0,
    certs: () => [{ cn: "system:node:edge-1", notAfter: new Date(Date.now() + 3600_000) }, { cn: "none" }],
    rss: () => 1234,
    version: "1.2.3",
    startedAtMs: 5_000_000,
    ...over,
  };
}

Deno.test("write queue gauges show what is queued, what was written and what was dropped", async () => {
  const { store, applied, release } = gatedStore();
  const ops = [put(1000), put(2000)];
  const q = new WriteQueue(store, opBytes(ops[0]) + opBytes(ops[1]) + 10);
  const reg = runtimeRegistry(source(q));
  for (const op of ops) assertEquals(q.push(op), true);
  assertEquals(q.push(put(100)), false, "over the byte bound: dropped");

  let m = reg.render();
  assertEquals(sample(m, "lite_apiserver_write_queue_depth"), 2);
  assertEquals(sample(m, "lite_apiserver_write_queue_bytes"), opBytes(ops[0]) + opBytes(ops[1]));
  assertEquals(sample(m, "lite_apiserver_write_queue_dropped_total"), 1);
  assertEquals(sample(m, "lite_apiserver_write_queue_written_total"), 0);

  release();
  assertEquals(await q.idle(5_000), true, "the queue drained");
  m = reg.render();
  assertEquals(applied.length, 2);
  assertEquals(
    ["depth", "bytes", "written_total", "failed_total"].map((f) =>
      sample(m, `lite_apiserver_write_queue_${f}`)
    ),
    [0, 0, 2, 0],
  );
});

Deno.test("runtime gauges: health, cache usage, certificate expiry, process", () => {
  const q = new WriteQueue(gatedStore().store, 1 << 20);
  let online = true;
  const reg = runtimeRegistry(source(q, { online: () => online }));
  let m = reg.render();
  assertEquals(sample(m, "lite_apiserver_online"), 1);
  assertEquals(sample(m, 'lite_apiserver_upstream_endpoint_healthy{endpoint="https://a:6443"}'), 1);
  assertEquals(sample(m, 'lite_apiserver_upstream_endpoint_healthy{endpoint="https://b:6443"}'), 0);
  assertEquals(sample(m, 'lite_apiserver_cache_entries{backend="sqlite"}'), 2);
  assertEquals(sample(m, 'lite_apiserver_cache_items{backend="sqlite"}'), 5);
  assertEquals(sample(m, 'lite_apiserver_cache_bytes{backend="sqlite"}'), 300);
  const expiry = sample(m, 'lite_apiserver_client_cert_expiry_seconds{cn="system:node:edge-1"}')!;
  assertEquals(expiry > 3590 && expiry <= 3600, true, `expiry ${expiry}`);
  assertEquals(m.includes('cn="none"'), false, "an identity without a certificate has no expiry");
  assertEquals(sample(m, "process_resident_memory_bytes"), 1234);
  assertEquals(sample(m, "process_start_time_seconds"), 5000);
  assertMatch(m, /^lite_apiserver_build_info\{version="1\.2\.3",deno="[^"]+",v8="[^"]+"\} 1$/m);
  online = false;
  m = reg.render();
  assertEquals(sample(m, "lite_apiserver_online"), 0);
  const none = runtimeRegistry(source(q, { cacheUsage: () => undefined })).render();
  assertEquals(/^lite_apiserver_cache_entries\{/m.test(none), false, "no sample before the first walk");
});
