/**
 * The one place where an upstream answer is relayed to the client: status and end-to-end headers,
 * the body streamed to the client within the slow-reader bounds (slow_reader.ts), the cache tap,
 * and the request's answer rewrite if it has one. A watch whose upstream stream is cut (the
 * connection failed, or the proxy went offline) goes to the `watchCut` hook; any other answer cut
 * short is cut short for the client too.
 */
import type { RequestContext } from "../exchange/context.ts";
import type { Cache } from "../cache/cache.ts";
import { tapResponse } from "../cache/response_tap.ts";
import type { UpstreamResponse } from "../upstream/response.ts";
import { endToEnd } from "./headers.ts";
import type { Readable } from "node:stream";
import { describeIdentity } from "../identity/resolve.ts";
import { type InFlight, type InFlightSet, track } from "./deadlines.ts";
import { type AnswerBounds, logSlowReader, type SlowReader } from "./slow_reader.ts";
import { WatchFrames, watchFramingOf } from "./watch_frames.ts";

export interface RelayDeps {
  cache: Cache;
  inflight: InFlightSet;
  observe(ctx: RequestContext, status: number, upstreamMs?: number): void;
  /** An upstream watch ended abnormally mid-answer, or the cloud went offline during it. */
  watchCut(ctx: RequestContext, reason: string): void;
  /** Bounds for a client that reads slower than the cloud sends. */
  bounds: AnswerBounds;
  /** A client met its bound (its watch was ended, or its answer cut): for /metrics. */
  slowReader?(ctx: RequestContext, what: SlowReader): void;
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
  const headers = endToEnd(response.headers);
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
  const cut = relayBody(ctx, body, entry, headers, deps);
  response.once("aborted", () => cut("the upstream connection failed mid-answer"));
}

/**
 * Streams the body to the client, bounding what waits for a slow client (slow_reader.ts): the
 * body is read as it comes (pausing the cloud's socket bounds nothing in Deno) and the bytes
 * written to the response but not yet taken by the client's socket are counted. A watch is
 * written event by event (watch_frames.ts), so that one ended for its slow client ends whole.
 */
function relayBody(
  ctx: RequestContext,
  body: Readable,
  entry: InFlight,
  headers: Record<string, string | number | string[] | undefined>,
  deps: RelayDeps,
): (reason: string) => void {
  const res = ctx.res;
  const isWatch = ctx.info.verb === "watch";
  const { slowReaderTimeoutMs } = deps.bounds;
  const bound = isWatch ? deps.bounds.watchBufferBytes : deps.bounds.answerBufferBytes;
  const framing = isWatch ? watchFramingOf(headers) : undefined;
  // An unfinished event is held back, at most one bound's worth.
  const frames = framing ? new WatchFrames(framing, bound) : undefined;

  /** Nothing more goes from the cloud to the client (the body ended, or was given up). */
  let stopped = false;
  /** The client met its bound: what it has is all it gets. */
  let gaveUp = false;
  /** Bytes written to the response; minus its writableLength: bytes its socket has taken. */
  let written = 0;
  let takenAtArm = 0;
  const taken = () => written - res.writableLength;
  const arm = () => {
    entry.deadline = performance.now() + slowReaderTimeoutMs;
    takenAtArm = taken();
  };

  const abortUpstream = entry.end;
  const detach = () => {
    stopped = true;
    body.off("data", onData);
    body.off("end", onEnd);
    frames?.drop();
  };
  const stop = () => {
    detach();
    deps.inflight.delete(entry);
    abortUpstream();
  };
  const cut = (reason: string) => {
    if (stopped) return;
    stop();
    if (isWatch) deps.watchCut(ctx, reason);
    else if (!res.writableFinished) res.destroy();
  };
  const tooSlow = (reason: SlowReader["reason"]) => {
    if (gaveUp) return;
    gaveUp = true;
    const what: SlowReader = { kind: isWatch ? "watch" : "answer", reason };
    deps.slowReader?.(ctx, what);
    logSlowReader(what, {
      path: ctx.info.path,
      identity: describeIdentity(ctx.identity),
      buffered: res.writableLength,
    });
    const clean = !stopped && isWatch && frames?.whole === true;
    if (!stopped) stop();
    if (!clean) return void res.destroy();
    // The apiserver's end of a watcher that cannot keep up: the chunked answer ends after the
    // last whole event. The end waits behind what the client has not taken: it gets one more
    // budget without progress, then the connection goes.
    res.end();
    if (res.writableFinished) return;
    track(deps.inflight, entry);
    arm();
  };

  const onData = (c: Uint8Array) => {
    const out = frames ? frames.push(c) : c;
    if (out.byteLength === 0) return;
    written += out.byteLength;
    if (!res.write(out) && !entry.deadline) arm();
    if (res.writableLength > bound) tooSlow("bytes");
  };
  const onEnd = () => {
    detach();
    const rest = frames?.flush();
    if (rest?.byteLength) {
      written += rest.byteLength;
      res.write(rest);
    }
    res.end();
    if (!res.writableFinished && !entry.deadline) arm();
  };
  body.on("data", onData);
  body.once("end", onEnd);

  // The time budget: a client that took nothing since the last check is past it.
  entry.expire = () => {
    if (res.writableFinished || res.destroyed) return;
    if (taken() > takenAtArm) {
      // Progress: a new budget while bytes still wait (or the end is not out yet).
      if (res.writableLength > 0 || res.writableEnded) arm();
      return;
    }
    if (gaveUp) return void res.destroy();
    tooSlow("time");
  };
  const done = () => {
    entry.deadline = 0;
    deps.inflight.delete(entry);
    if (!stopped) detach();
  };
  res.once("finish", done);
  res.once("close", done);

  entry.abandon = (reason) => {
    // Mid-answer: a watch is cut (its upstream is gone) or, at shutdown, ended; other answers
    // finish or fail on their own.
    if (!isWatch) return;
    if (reason === "offline") cut("the cloud went offline");
    else entry.end();
  };
  // A retired credential or shutdown: the watch ends cleanly and the client re-establishes it as itself.
  entry.end = () => {
    if (stopped) return;
    stop();
    endWatch(ctx);
  };
  return cut;
}

/** What a cut watch gets when nothing carries it on: a clean end, so the client re-watches. */
export function endWatch(ctx: RequestContext): void {
  if (!ctx.res.writableEnded) ctx.res.end();
}
