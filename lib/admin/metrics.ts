/**
 * A small Prometheus text-format registry: counters and histograms with labels, and gauges read
 * at scrape time. No dependency: the format is simple and the binary stays small.
 */
type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

export class Counter {
  #values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelText(labels);
    const v = this.#values.get(k);
    if (v) v.value += by;
    else this.#values.set(k, { labels, value: by });
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.value ?? 0;
  }
  #fast = new Map<string, { labels: Labels; value: number }>();
  /** The request path's increment: a cheap key, labels escaped only for a new series. */
  inc4(verb: string, resource: string, code: number, source: string): void {
    const fk = `${verb}\0${resource}\0${code}\0${source}`;
    let v = this.#fast.get(fk);
    if (!v) {
      const labels = { verb, resource, code: String(code), source };
      const k = labelText(labels);
      v = this.#values.get(k) ?? { labels, value: 0 };
      this.#values.set(k, v);
      this.#fast.set(fk, v);
    }
    v.value++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const { labels, value } of this.#values.values()) {
      out += `${this.name}${labelText(labels)} ${value}\n`;
    }
    return out;
  }
}

export class Histogram {
  #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  observe(value: number, labels: Labels = {}): void {
    const k = labelText(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.count}\n`;
      out += `${this.name}_sum${labelText(s.labels)} ${s.sum}\n${this.name}_count${
        labelText(s.labels)
      } ${s.count}\n`;
    }
    return out;
  }
}

/**
 * A gauge whose samples are computed when scraped. With `type` "counter" it exposes a monotonic
 * value kept elsewhere (e.g. the write queue's totals) without copying it on every change.
 */
export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly sample: () => Array<[Labels, number]> | number,
    readonly type: "gauge" | "counter" = "gauge",
  ) {}
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    const s = this.sample();
    if (typeof s === "number") return out + `${this.name} ${s}\n`;
    for (const [labels, v] of s) out += `${this.name}${labelText(labels)} ${v}\n`;
    return out;
  }
}

export class Registry {
  #metrics: Array<Counter | Histogram | Gauge> = [];
  add<T extends Counter | Histogram | Gauge>(m: T): T {
    this.#metrics.push(m);
    return m;
  }
  render(): string {
    return this.#metrics.map((m) => m.render()).join("");
  }
}

/** The proxy's own metrics, updated on the request path. */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests = this.registry.add(
    new Counter(
      "lite_apiserver_requests_total",
      "Requests answered, by verb, resource, code and source (upstream, cache or local).",
    ),
  );
  readonly upstreamLatency = this.registry.add(
    new Histogram(
      "lite_apiserver_upstream_response_seconds",
      "Time from sending a request upstream to its response headers.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
  );
  /** Issue 18: clients that could not keep up with an answer (bounds in lib/proxy/slow_reader.ts). */
  readonly slowReaders = this.registry.add(
    new Counter(
      "lite_apiserver_slow_readers_total",
      "Clients that could not keep up with an answer, by kind (watch: ended; answer: cut) and reason (bytes, time).",
    ),
  );
  readonly transitions = this.registry.add(
    new Counter(
      "lite_apiserver_online_transitions_total",
      "Switches between online and offline, by the state entered.",
    ),
  );
}

/** What the runtime metrics read at scrape time (all cheap: the cache walk is done beforehand). */
export interface RuntimeSource {
  online(): boolean;
  endpoints(): Array<{ url: string; healthy: boolean }>;
  backend: string;
  /** The last cache usage computed (undefined before the first walk). */
  cacheUsage(): { entries: number; bytes: number; items: number } | undefined;
  queue(): { depth: number; bytes: number; dropped: number; written: number; failed: number };
  heldWatches(): number;
  /** The store's current run of write failures (failing) and the last one (last), epoch ms. */
  writeFailure?(): { failing?: { sinceMs: number }; last?: { lastMs: number } };
  /** Client identities with their certificate's notAfter. */
  certs(): Array<{ cn: string; notAfter?: Date }>;
  rss(): number;
  version: string;
  startedAtMs: number;
}

/** Gauges for state that lives in other components: health, cache, queue, certificates, process. */
export function runtimeRegistry(src: RuntimeSource): Registry {
  const r = new Registry();
  r.add(
    new Gauge(
      "lite_apiserver_online",
      "1 while any upstream endpoint is healthy (online), 0 offline.",
      () => src.online() ? 1 : 0,
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_upstream_endpoint_healthy",
      "1 when the upstream endpoint passes its health checks.",
      () => src.endpoints().map((e) => [{ endpoint: e.url }, e.healthy ? 1 : 0]),
    ),
  );
  const usage =
    (f: (u: { entries: number; bytes: number; items: number }) => number) => (): Array<[Labels, number]> => {
      const u = src.cacheUsage();
      return u ? [[{ backend: src.backend }, f(u)]] : [];
    };
  r.add(
    new Gauge(
      "lite_apiserver_cache_entries",
      "Cached objects and lists, per store backend.",
      usage((u) => u.entries),
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_cache_items",
      "Cached objects plus list items, per store backend.",
      usage((u) => u.items),
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_cache_bytes",
      "Bytes of cached bodies, per store backend.",
      usage((u) => u.bytes),
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_write_queue_depth",
      "Cache writes waiting for the store.",
      () => src.queue().depth,
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_write_queue_bytes",
      "Bytes of cache writes waiting for the store.",
      () => src.queue().bytes,
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_write_queue_dropped_total",
      "Cache writes dropped because the queue was full.",
      () => src.queue().dropped,
      "counter",
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_write_queue_written_total",
      "Cache writes applied to the store.",
      () => src.queue().written,
      "counter",
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_write_queue_failed_total",
      "Cache writes the store rejected.",
      () => src.queue().failed,
      "counter",
    ),
  );
  if (src.writeFailure) {
    const wf = src.writeFailure;
    r.add(
      new Gauge(
        "lite_apiserver_cache_write_failing",
        "1 while the store rejects cache writes (e.g. the disk is full; requests are still answered).",
        () => wf().failing ? 1 : 0,
      ),
    );
    r.add(
      new Gauge(
        "lite_apiserver_cache_write_failing_since_seconds",
        "Start of the current run of cache write failures, seconds since the epoch (absent when writes work).",
        () => {
          const f = wf().failing;
          return f ? [[{}, Math.floor(f.sinceMs / 1000)]] : [];
        },
      ),
    );
    r.add(
      new Gauge(
        "lite_apiserver_cache_write_last_failure_seconds",
        "Time of the last cache write the store rejected, seconds since the epoch (absent if none).",
        () => {
          const l = wf().last;
          return l ? [[{}, Math.floor(l.lastMs / 1000)]] : [];
        },
      ),
    );
  }
  r.add(
    new Gauge(
      "lite_apiserver_offline_watches_held",
      "Watches held open from the cache while offline.",
      () => src.heldWatches(),
    ),
  );
  r.add(
    new Gauge(
      "lite_apiserver_client_cert_expiry_seconds",
      "Seconds until each client identity's certificate expires (negative once expired).",
      () => {
        const now = Date.now();
        return src.certs().filter((c) => c.cn && c.notAfter).map((
          c,
        ) => [{ cn: c.cn }, Math.round((c.notAfter!.getTime() - now) / 1000)]);
      },
    ),
  );
  r.add(new Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", () => src.rss()));
  r.add(
    new Gauge(
      "process_start_time_seconds",
      "Start time of the process since the epoch, in seconds.",
      () => Math.floor(src.startedAtMs / 1000),
    ),
  );
  r.add(
    new Gauge("lite_apiserver_build_info", "Build information; the value is always 1.", () => [[{
      version: src.version,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
    }, 1]]),
  );
  return r;
}
