/**
 * One attempt at one upstream endpoint: the request goes out on the caller's own connection pool
 * and the attempt ends with a typed outcome: the answer's head arrived, the endpoint failed, the
 * deadline passed, the proxy went offline, or the client left.
 */
import type { RequestContext } from "../exchange/context.ts";
import type { UpstreamAgents } from "../upstream/agents.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { RequestSpec } from "../upstream/connection.ts";
import type { UpstreamResponse } from "../upstream/response.ts";
import { type AbandonReason, type InFlight, type InFlightSet, track } from "./deadlines.ts";
import type { UpstreamCall, UpstreamPool } from "../upstream/pool.ts";
import { hasStreamedBody } from "./request_body.ts";
import { endToEnd, preferJson } from "./headers.ts";

export type AttemptOutcome =
  /** The response head arrived; the body is still to be relayed. */
  | { kind: "answered"; response: UpstreamResponse; entry: InFlight; upstreamMs: number }
  /** The endpoint gave no answer (connect error, reset, invalid response). */
  | { kind: "failed"; error: Error & { code?: string } }
  /** A write got no response head within the write timeout. */
  | { kind: "timed-out" }
  /** A read got no response head within the backend timeout and the cache holds an answer. */
  | { kind: "slow"; sendCached: () => void }
  /** The proxy went offline (or is shutting down) before the answer. */
  | { kind: "offline" }
  /** The client went away. */
  | { kind: "client-gone" };

export interface AttemptDeps {
  agents: UpstreamAgents;
  inflight: InFlightSet;
  backendTimeoutMs: number;
  writeTimeoutMs: number;
  /** The cache's answer to a slow read, sent by the callback (undefined: nothing cached). */
  slowRead(ctx: RequestContext): Promise<(() => void) | undefined>;
}

export interface Attempt {
  outcome: Promise<AttemptOutcome>;
  /** The client left: give up on the upstream call (and its connection if unfinished). */
  cancel(): void;
}

/** The upstream request for a client request. */
export function upstreamRequest(ctx: RequestContext, ep: Endpoint): RequestSpec {
  // Repeated fields go on repeated (Impersonate-Group: one group per field), as received.
  const headers = endToEnd(ctx.req.headers, ctx.req.rawHeaders);
  headers.host = ep.host;
  // JSON is negotiated where the cache or an answer rewrite must read the answer.
  if ((ctx.plan || ctx.rewrite) && headers.accept) {
    headers.accept = preferJson(headers.accept as string | string[]);
  }
  // Answer rewrite (in-cluster clients, issue 12): ask for an unencoded answer it can read.
  if (ctx.rewrite) delete headers["accept-encoding"];
  return {
    method: ctx.req.method ?? "GET",
    path: ep.prefix + ctx.req.url,
    headers: headers as RequestSpec["headers"],
    body: ctx.body,
    stream: hasStreamedBody(ctx) ? ctx.req : undefined,
  };
}

export function attempt(ctx: RequestContext, ep: Endpoint, deps: AttemptDeps): Attempt {
  return new AttemptRun(ctx, ep, deps);
}

/**
 * One attempt's state machine: it is its own in-flight entry and its own Attempt, so a request
 * allocates this object and its outcome promise, not a closure per callback (this is per GET).
 */
class AttemptRun implements InFlight, Attempt {
  readonly outcome: Promise<AttemptOutcome>;
  readonly pool: UpstreamPool;
  deadline: number;
  responding = false;
  #settled = false;
  #resolve!: (o: AttemptOutcome) => void;
  readonly #isRead: boolean;
  readonly #started: number;
  readonly #call: UpstreamCall;

  constructor(readonly ctx: RequestContext, ep: Endpoint, readonly deps: AttemptDeps) {
    this.#isRead = ctx.req.method === "GET" || ctx.req.method === "HEAD";
    this.pool = deps.agents.agentFor(ctx.identity);
    this.#started = performance.now();
    this.#call = this.pool.request(ep, upstreamRequest(ctx, ep));
    this.outcome = new Promise<AttemptOutcome>((r) => (this.#resolve = r));
    this.deadline = this.#started + (this.#isRead ? deps.backendTimeoutMs : deps.writeTimeoutMs);
    track(deps.inflight, this);
    this.#call.response.then(
      (response) => {
        const upstreamMs = performance.now() - this.#started;
        if (!this.#settle({ kind: "answered", response, entry: this, upstreamMs }, false)) response.destroy();
      },
      (error) => this.#settle({ kind: "failed", error }, false),
    );
  }

  #settle(o: AttemptOutcome, abortCall: boolean): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.deadline = 0;
    if (o.kind !== "answered") this.deps.inflight.delete(this);
    if (abortCall) this.#call.abort();
    this.#resolve(o);
    return true;
  }

  // A read with no head in time: the cache answers if it can; if it holds nothing for this read,
  // waiting on for a slow but healthy upstream beats a 503.
  async #slow() {
    let sendCached: (() => void) | undefined;
    try {
      sendCached = await this.deps.slowRead(this.ctx);
    } catch {
      sendCached = undefined;
    }
    if (sendCached) this.#settle({ kind: "slow", sendCached }, true);
  }

  expire(): void {
    if (this.#isRead) void this.#slow();
    else this.#settle({ kind: "timed-out" }, true);
  }

  // Reads waiting on a vanished upstream go to the cache; a write keeps its chance to complete.
  abandon(reason: AbandonReason): void {
    if (this.#isRead || reason === "shutdown") this.#settle({ kind: "offline" }, true);
  }

  /** An own function, not a method: relay.ts takes it off the entry before replacing it. */
  end = (): void => this.#call.abort();

  cancel(): void {
    if (!this.#settle({ kind: "client-gone" }, true)) this.#call.abort();
  }
}
