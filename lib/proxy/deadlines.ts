/**
 * Requests waiting on the upstream, and their deadlines. A read must start answering within the
 * backend timeout (else the cache may answer it); a write gets the apiserver's own request timeout.
 * One shared sweep checks every deadline rather than a timer per request (lib/timers.ts).
 */
import type { RequestContext } from "../exchange/context.ts";
import type { UpstreamPool } from "../upstream/pool.ts";
import { DeadlineSet, type Timers } from "../timers.ts";

/** Why requests in flight are given up on as a group. */
export type AbandonReason = "offline" | "shutdown";

export interface InFlight {
  ctx: RequestContext;
  /** The connection pool (the credential) the request went out on. */
  pool: UpstreamPool;
  /** performance.now() by which the response head must arrive (0: no deadline). */
  deadline: number;
  /** Response headers were sent to the client. */
  responding: boolean;
  /** Called once when the deadline passes. */
  expire(): void;
  /** The upstream is given up on (offline, shutdown). */
  abandon(reason: AbandonReason): void;
  /** Ends the exchange and its upstream connection (a retired credential). */
  end(): void;
}

const SWEEP_MS = 10;

/**
 * The requests in flight of one server, whose deadlines one sweep of the server's timer service
 * checks every 10 ms while any are waiting (lib/timers.ts).
 */
export class InFlightSet extends Set<InFlight> {
  #deadlines: DeadlineSet<InFlight>;

  constructor(timers: Timers) {
    super();
    this.#deadlines = new DeadlineSet<InFlight>(timers, SWEEP_MS, { clearOnExpiry: true });
  }

  /** Registers a request in flight; its deadline is checked from now on. */
  track(entry: InFlight): void {
    this.add(entry);
    this.#deadlines.register(entry);
  }

  override delete(entry: InFlight): boolean {
    this.#deadlines.unregister(entry);
    return super.delete(entry);
  }
}

/** Registers a request in flight; its deadline is checked from now on. */
export function track(inflight: InFlightSet, entry: InFlight): void {
  inflight.track(entry);
}

/** Going offline or shutting down: waiting reads go to the cache, watches are cut. */
export function abandonInFlight(inflight: Set<InFlight>, reason: AbandonReason = "offline"): void {
  for (const entry of [...inflight]) entry.abandon(reason);
}

/**
 * Retires a replaced connection pool: watches on it end cleanly (clients re-establish them with
 * the new identity), other requests finish, then its connections are closed.
 */
export function retirePool(old: UpstreamPool, inflight: Set<InFlight>, graceMs = 30_000): void {
  for (const e of [...inflight]) {
    if (e.pool === old && e.ctx.info.verb === "watch" && e.responding) e.end();
  }
  old.retire();
  const deadline = Date.now() + graceMs;
  const sweep = () => {
    const busy = [...inflight].some((e) => e.pool === old);
    if (!busy || Date.now() > deadline) old.destroy();
    else setTimeout(sweep, 200);
  };
  sweep();
}
