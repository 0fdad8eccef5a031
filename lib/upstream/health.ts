/**
 * Probes each upstream endpoint and decides online/offline. `failures` failed probes in a row make
 * an endpoint unhealthy; one success makes it healthy again. Online = any endpoint healthy.
 * Requests that fail to connect report it too, so a cut is noticed before the next probe.
 */
import { log } from "../log.ts";
import type { UpstreamPool } from "./pool.ts";
import { endpointOf } from "./endpoint.ts";

export interface EndpointState {
  url: string;
  healthy: boolean;
  consecutiveFailures: number;
  lastProbeMs: number;
  lastError?: string;
  lastLatencyMs?: number;
}

export interface HealthOptions {
  endpoints: string[];
  intervalMs: number;
  failures: number;
  timeoutMs: number;
  /** The pool probes use (no client certificate). */
  pool: () => UpstreamPool;
}

type Listener = (online: boolean) => void;

export class UpstreamHealth {
  readonly endpoints: EndpointState[];
  #opts: HealthOptions;
  #online = true;
  #timer?: ReturnType<typeof setTimeout>;
  #listeners: Listener[] = [];
  #probing = false;
  #closed = false;
  transitions = 0;
  changedAt = Date.now();

  constructor(opts: HealthOptions) {
    this.#opts = opts;
    this.endpoints = opts.endpoints.map((url) => ({
      url,
      healthy: true,
      consecutiveFailures: 0,
      lastProbeMs: 0,
    }));
  }

  get online(): boolean {
    return this.#online;
  }

  onChange(fn: Listener): void {
    this.#listeners.push(fn);
  }

  /** Endpoints to try for a request, healthy ones first, each group in priority order. */
  order(): EndpointState[] {
    const healthy = this.endpoints.filter((e) => e.healthy);
    return healthy.length ? [...healthy, ...this.endpoints.filter((e) => !e.healthy)] : [...this.endpoints];
  }

  /**
   * Probes now and then on the interval. Does not wait for the first round: after an offline
   * reboot the cache must answer at once, and a request that finds the upstream gone is served
   * from the cache anyway.
   */
  start(): void {
    this.probeAll().finally(() => this.#schedule());
  }

  #schedule() {
    if (this.#closed) return;
    this.#timer = setTimeout(async () => {
      await this.probeAll();
      this.#schedule();
    }, this.#opts.intervalMs);
  }

  /** Something looked wrong (a slow answer): probe now rather than at the next interval. */
  probeSoon(): void {
    if (!this.#probing) queueMicrotask(() => this.probeAll());
  }

  /** A request could not reach the endpoint (connect error or timeout). */
  reportFailure(url: string, reason: string): void {
    const e = this.endpoints.find((x) => x.url === url);
    if (!e) return;
    this.#fail(e, reason);
    this.#update();
    // Confirm quickly rather than waiting for the next interval.
    if (!this.#probing) queueMicrotask(() => this.probeAll());
  }

  #fail(e: EndpointState, reason: string) {
    e.consecutiveFailures++;
    e.lastError = reason;
    if (e.healthy && e.consecutiveFailures >= this.#opts.failures) {
      e.healthy = false;
      log.warn("upstream endpoint unhealthy", { endpoint: e.url, reason });
    }
  }

  async probeAll(): Promise<void> {
    if (this.#probing || this.#closed) return;
    this.#probing = true;
    try {
      await Promise.all(this.endpoints.map((e) => this.#probe(e)));
    } finally {
      this.#probing = false;
    }
    this.#update();
  }

  #probe(e: EndpointState): Promise<void> {
    const started = performance.now();
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok: boolean, reason?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        e.lastProbeMs = Date.now();
        if (ok) {
          e.lastLatencyMs = performance.now() - started;
          e.consecutiveFailures = 0;
          e.lastError = undefined;
          if (!e.healthy) log.info("upstream endpoint healthy", { endpoint: e.url });
          e.healthy = true;
        } else this.#fail(e, reason ?? "unknown");
        resolve();
      };
      const ep = endpointOf(e.url);
      const call = this.#opts.pool().request(ep, {
        method: "GET",
        path: `${ep.prefix}/readyz`,
        headers: { host: ep.host, accept: "*/*" },
      });
      const timer = setTimeout(() => {
        finish(false, `no answer within ${this.#opts.timeoutMs}ms`);
        call.abort();
      }, this.#opts.timeoutMs);
      call.response.then(
        (res) => {
          // Any answer but a 5xx proves the apiserver is reachable and serving (401/403 included:
          // some clusters disable anonymous access to /readyz).
          const code = res.statusCode;
          res.on("end", () => finish(code < 500, `readyz answered ${code}`));
          res.on("aborted", () => finish(false, "the answer to readyz was cut short"));
          res.resume();
        },
        (err: Error) => finish(false, err.message),
      );
    });
  }

  #update() {
    const online = this.endpoints.some((e) => e.healthy);
    if (online === this.#online) return;
    this.#online = online;
    this.transitions++;
    this.changedAt = Date.now();
    if (online) log.info("upstream reachable again: online, serving from the cloud");
    else log.warn("upstream unreachable: offline, serving reads from the cache");
    for (const fn of this.#listeners) {
      try {
        fn(online);
      } catch (err) {
        log.error("health listener failed", { error: (err as Error).message });
      }
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}
