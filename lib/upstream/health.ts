/**
 * Probes each upstream endpoint and decides online/offline. `failures` failed probes in a row make
 * an endpoint unhealthy; one success makes it healthy again. Online = any endpoint healthy.
 * Requests that fail to connect report it too, so a cut is noticed before the next probe.
 *
 * At start-up an endpoint's state is unknown (requests are forwarded meanwhile). Its first probe
 * decides at once when the endpoint cannot be reached: a refused connection, or a TCP/TLS
 * handshake not completed within `connectTimeoutMs` (a black hole). A handshake that completes
 * proves the cloud is up, however slowly it then answers: only the usual failure count can make
 * it unhealthy. So an offline reboot serves from the cache within the connect timeout, and a
 * healthy-but-slow cloud is never bypassed.
 */
import { log } from "../log.ts";
import type { UpstreamPool } from "./pool.ts";
import { endpointOf } from "./endpoint.ts";
import { Emitter } from "../events.ts";

export interface EndpointState {
  url: string;
  healthy: boolean;
  consecutiveFailures: number;
  lastProbeMs: number;
  lastError?: string;
  lastLatencyMs?: number;
  /** A probe has answered or failed for a definite reason since start-up. */
  known?: boolean;
}

export interface HealthOptions {
  endpoints: string[];
  intervalMs: number;
  failures: number;
  timeoutMs: number;
  /** While an endpoint's state is unknown: a handshake not done by then means unreachable. */
  connectTimeoutMs?: number;
  /** The pool probes use (no client certificate). */
  pool: () => UpstreamPool;
}

type Listener = (online: boolean) => void;

export class UpstreamHealth {
  readonly endpoints: EndpointState[];
  #opts: HealthOptions;
  #online = true;
  #timer?: ReturnType<typeof setTimeout>;
  #changes = new Emitter<{ change: [online: boolean] }>();
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
    this.#changes.on("change", fn);
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

  /** `unreachable`: the endpoint could not be connected to (not merely slow to answer). */
  #fail(e: EndpointState, reason: string, unreachable = false) {
    e.consecutiveFailures++;
    e.lastError = reason;
    const decisive = unreachable && !e.known;
    if (unreachable) e.known = true;
    if (e.healthy && (decisive || e.consecutiveFailures >= this.#opts.failures)) {
      e.healthy = false;
      // Rate-limited per kind: an endpoint that flaps must not flood the log.
      log.warn(
        "upstream endpoint unhealthy",
        { endpoint: e.url, reason },
        `upstream.endpoint-unhealthy:${e.url}`,
      );
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
      let connectTimer: ReturnType<typeof setTimeout> | undefined;
      /** `keepTrying`: the verdict is given but the attempt goes on until the probe timeout. */
      const finish = (ok: boolean, reason?: string, unreachable = false, keepTrying = false) => {
        if (done) return;
        done = true;
        if (!keepTrying) clearTimeout(timer);
        clearTimeout(connectTimer);
        e.lastProbeMs = Date.now();
        if (ok) {
          e.known = true;
          e.lastLatencyMs = performance.now() - started;
          e.consecutiveFailures = 0;
          e.lastError = undefined;
          if (!e.healthy) {
            log.info("upstream endpoint healthy", { endpoint: e.url }, `upstream.endpoint-healthy:${e.url}`);
          }
          e.healthy = true;
        } else this.#fail(e, reason ?? "unknown", unreachable);
        resolve();
      };
      let handshaken = false;
      // Unknown state: the handshake decides (below), then the answer gets the usual time.
      const connectMs = this.#opts.connectTimeoutMs;
      const unknown = !e.known && !!connectMs;
      let late = false;
      const ep = endpointOf(e.url);
      const call = this.#opts.pool().request(ep, {
        method: "GET",
        path: `${ep.prefix}/readyz`,
        headers: { host: ep.host, accept: "*/*" },
      }, {
        // A reused connection, or a fresh one whose TLS handshake just completed.
        connected: () => {
          handshaken = true;
          clearTimeout(connectTimer);
          if (late) this.#reachedLate(e);
        },
      });
      const timer = setTimeout(() => {
        clearTimeout(connectTimer);
        // Unknown state and the handshake completed: up but slow, not a failure.
        if (unknown && handshaken) finish(true);
        else finish(false, `no answer within ${this.#opts.timeoutMs}ms`);
        call.abort();
      }, this.#opts.timeoutMs + (unknown ? connectMs! : 0));
      // Unknown state: tell a black hole (no handshake) from a slow cloud (handshake, slow answer).
      // The verdict is given at the connect timeout, but the attempt goes on until the probe
      // timeout: a handshake that completes late (a cold start on a loaded node) brings the
      // endpoint back at once rather than at the next probe.
      if (unknown && !handshaken) {
        connectTimer = setTimeout(() => {
          late = true;
          finish(false, `no TLS handshake within ${connectMs}ms`, true, true);
        }, connectMs);
      }
      call.response.then(
        (res) => {
          // Any answer but a 5xx proves the apiserver is reachable and serving (401/403 included:
          // some clusters disable anonymous access to /readyz).
          const code = res.statusCode;
          res.on("end", () => finish(code < 500, `readyz answered ${code}`));
          // A close-delimited answer always ends so (connection.ts); its status still counts.
          res.on(
            "aborted",
            () => finish(res.closeDelimited && code < 500, `the answer to readyz (${code}) was cut short`),
          );
          res.resume();
        },
        // No answer at all: the endpoint could not be reached.
        (err: Error) => finish(false, err.message, true),
      );
    });
  }

  /** A start-up handshake declared missing completed after all: the endpoint is up. */
  #reachedLate(e: EndpointState) {
    if (this.#closed || e.healthy) return;
    e.consecutiveFailures = 0;
    e.lastError = undefined;
    e.healthy = true;
    log.info("upstream endpoint healthy (TLS handshake completed late)", { endpoint: e.url });
    this.#update();
  }

  #update() {
    const online = this.endpoints.some((e) => e.healthy);
    if (online === this.#online) return;
    this.#online = online;
    this.transitions++;
    this.changedAt = Date.now();
    if (online) log.info("upstream reachable again: online, serving from the cloud");
    else log.warn("upstream unreachable: offline, serving reads from the cache");
    this.#changes.emit("change", online);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}
