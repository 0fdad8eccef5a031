/**
 * The online path: a request goes to the healthiest upstream endpoint with the caller's own
 * credentials (attempt.ts); an endpoint that cannot be reached hands a replayable request to the
 * next one (failover.ts); the outcome decides what the client gets: the relayed answer (relay.ts),
 * the cache's answer (a slow or offline read), or a Status saying why not.
 */
import type { RequestContext } from "../exchange/context.ts";
import { sendStatus } from "../exchange/status.ts";
import type { UpstreamHealth } from "../upstream/health.ts";
import { endpointOf } from "../upstream/endpoint.ts";
import { UNEXPECTED_SWITCH } from "../upstream/connection.ts";
import { log } from "../log.ts";
import { type Attempt, attempt, type AttemptDeps, type AttemptOutcome } from "./attempt.ts";
import { shouldFailOver } from "./failover.ts";
import { relay, type RelayDeps } from "./relay.ts";
import { hasStreamedBody } from "./request_body.ts";

export interface ForwardDeps extends AttemptDeps, RelayDeps {
  health: UpstreamHealth;
  /** Called when no endpoint answered: serve from the cache, or say so. */
  unreachable(ctx: RequestContext, reason: string): void;
}

export function forward(ctx: RequestContext, deps: ForwardDeps): void {
  const endpoints = deps.health.order();
  const isRead = ctx.req.method === "GET" || ctx.req.method === "HEAD";
  const replayable = !hasStreamedBody(ctx);
  let current: Attempt | undefined;
  // The client left before the answer was complete: stop the upstream call.
  ctx.res.once("close", () => {
    if (!ctx.res.writableFinished) current?.cancel();
  });

  const tryEndpoint = (i: number) => {
    const url = endpoints[i].url;
    current = attempt(ctx, endpointOf(url), deps);
    current.outcome.then((o) => decide(o, i, url));
  };

  const decide = (o: AttemptOutcome, i: number, url: string) => {
    switch (o.kind) {
      case "answered":
        return relay(ctx, o.response, o.entry, o.upstreamMs, deps);
      case "failed": {
        if (o.error.code === UNEXPECTED_SWITCH) {
          // A protocol error, not an unreachable cloud: no cache stands in for it, and the
          // client's connection goes too (as Go's ReverseProxy answers 502).
          deps.observe(ctx, 502);
          ctx.res.closeAfter();
          return sendStatus(ctx.res, 502, `the cloud kube-apiserver answered wrongly: ${o.error.message}`);
        }
        // A stream the cloud reset (HTTP/2 RST_STREAM) came over a live connection: the endpoint is
        // reachable, and a cloud resetting one client's streams must not take everyone offline.
        if (!(o.error as { streamReset?: boolean }).streamReset) {
          deps.health.reportFailure(url, o.error.message);
        }
        log.debug("upstream attempt failed", { endpoint: url, error: o.error.message });
        if (shouldFailOver(o.error, i, endpoints.length, replayable)) return tryEndpoint(i + 1);
        if (isRead || ctx.plan) return deps.unreachable(ctx, o.error.message);
        deps.observe(ctx, 503);
        return sendStatus(
          ctx.res,
          503,
          `the cloud kube-apiserver is unreachable (${o.error.message}); the request was not applied`,
          { retryAfter: 1 },
        );
      }
      case "timed-out":
        deps.observe(ctx, 504);
        return sendStatus(
          ctx.res,
          504,
          `the cloud kube-apiserver gave no answer (no answer within ${deps.writeTimeoutMs}ms); ` +
            "the request may or may not have been applied",
          { reason: "Timeout" },
        );
      case "slow":
        // Slow is not down: the probes decide whether the cloud is gone.
        deps.health.probeSoon();
        return o.sendCached();
      case "offline":
        return deps.unreachable(ctx, "offline");
      case "client-gone":
        return;
    }
  };

  tryEndpoint(0);
}
