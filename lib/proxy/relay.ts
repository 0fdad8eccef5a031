/**
 * The one place where an upstream answer is relayed to the client: status and end-to-end headers,
 * the body streamed with backpressure, the cache tap, and the request's answer rewrite if it has
 * one. A watch whose upstream stream is cut (the connection failed, or the proxy went offline)
 * goes to the `watchCut` hook; any other answer cut short is cut short for the client too.
 */
import type { RequestContext } from "../exchange/context.ts";
import type { Cache } from "../cache/cache.ts";
import { tapResponse } from "../cache/response_tap.ts";
import type { UpstreamResponse } from "../upstream/response.ts";
import type { InFlight, InFlightSet } from "./deadlines.ts";
import { endToEnd } from "./headers.ts";

export interface RelayDeps {
  cache: Cache;
  inflight: InFlightSet;
  observe(ctx: RequestContext, status: number, upstreamMs?: number): void;
  /** An upstream watch ended abnormally mid-answer, or the cloud went offline during it. */
  watchCut(ctx: RequestContext, reason: string): void;
}

export function relay(
  ctx: RequestContext,
  response: UpstreamResponse,
  entry: InFlight,
  upstreamMs: number,
  deps: RelayDeps,
): void {
  const isWatch = ctx.info.verb === "watch";
  entry.responding = true;
  ctx.source = "upstream";
  deps.observe(ctx, response.statusCode, upstreamMs);
  if (ctx.plan) tapResponse(deps.cache, ctx.plan, response);

  // Answer rewrite hook (in-cluster clients, issue 12): a Transform between the upstream body and
  // the client; the body changes length, so it goes out chunked. The tap sees the upstream's truth.
  const rewrite = ctx.rewrite?.stream(response.statusCode, response.headers);
  // Repeated fields (Warning, WWW-Authenticate...) stay apart, as the upstream sent them.
  const headers = endToEnd(response.headers, response.rawHeaders);
  if (rewrite) delete headers["content-length"];
  ctx.res.writeHead(response.statusCode, response.statusMessage, headers);
  // A small answer already whole (the usual GET): handed over in one end(), without the
  // stream/pipe machinery, which was a large share of the per-request CPU. Reading it still
  // feeds the cache tap ('data', then 'end').
  if (!isWatch && !rewrite && response.complete && headers["content-length"] !== undefined) {
    deps.inflight.delete(entry);
    entry.end = () => {};
    ctx.res.end(response.readWhole());
    return;
  }
  if (isWatch) ctx.res.flushHeaders();
  const body = rewrite ? response.pipe(rewrite) : response;
  body.pipe(ctx.res);

  // The exchange is over for the relay once the answer is complete, cut, or the client left.
  let over = false;
  const abortUpstream = entry.end;
  const finish = () => {
    over = true;
    deps.inflight.delete(entry);
  };
  const stop = () => {
    finish();
    body.unpipe(ctx.res);
    abortUpstream();
  };
  const cut = (reason: string) => {
    if (over) return;
    stop();
    if (isWatch) deps.watchCut(ctx, reason);
    else if (!ctx.res.writableFinished) ctx.res.destroy();
  };
  response.once("aborted", () => cut("the upstream connection failed mid-answer"));
  response.once("close", finish);
  ctx.res.once("close", finish);
  entry.abandon = (reason) => {
    // Mid-answer: a watch is cut (its upstream is gone) or, at shutdown, ended; other answers
    // finish or fail on their own.
    if (!isWatch) return;
    if (reason === "offline") cut("the cloud went offline");
    else entry.end();
  };
  // A retired credential or shutdown: the watch ends cleanly and the client re-establishes it as itself.
  entry.end = () => {
    if (over) return;
    stop();
    endWatch(ctx);
  };
}

/** What a cut watch gets when nothing carries it on: a clean end, so the client re-watches. */
export function endWatch(ctx: RequestContext): void {
  if (!ctx.res.writableEnded) ctx.res.end();
}
