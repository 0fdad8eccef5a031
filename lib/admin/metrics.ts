/**
 * A small Prometheus text-format registry: counters and histograms with labels, and gauges read
 * at scrape time. No dependency: the format is simple and the binary stays small.
 */
type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
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
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const { labels, value } of this.#values.values()) out += `${this.name}${labelText(labels)} ${value}\n`;
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
      out += `${this.name}_sum${labelText(s.labels)} ${s.sum}\n${this.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

/** A gauge whose samples are computed when scraped. */
export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly sample: () => Array<[Labels, number]> | number,
  ) {}
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n`;
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
    new Counter("lite_apiserver_requests_total", "Requests answered, by verb, resource, code and source (upstream, cache or local)."),
  );
  readonly upstreamLatency = this.registry.add(
    new Histogram(
      "lite_apiserver_upstream_response_seconds",
      "Time from sending a request upstream to its response headers.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
  );
  readonly transitions = this.registry.add(
    new Counter("lite_apiserver_online_transitions_total", "Switches between online and offline, by the state entered."),
  );
}
