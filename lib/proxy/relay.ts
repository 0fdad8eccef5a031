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
import { passed } from "../http/reclaim.ts";
import { type LagBudget, lagBudget } from "./lag_budget.ts";

const EMPTY = new Uint8Array();

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
  /** All relays' queues together (lag_budget.ts); the process's one budget by default. */
  lagBudget?: LagBudget;
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
  const cut = relayBody(ctx, body, entry, headers, deps);
  response.once("aborted", () => cut("the upstream connection failed mid-answer"));
}

/**
 * Streams the body to the client, bounding what waits for a slow client (slow_reader.ts). An answer
 * that is not a watch waits for its client: the body is paused, and the upstream connection's read
 * gate stops the cloud's socket for real. A watch is read as it comes and written event by event
 * (watch_frames.ts), so one ended for its slow client ends after a whole event. What the client's
 * side cannot take yet waits in this relay's own queue, handed to the response one chunk at a time
 * as it drains (never as one large batch), so the bytes waiting are counted here and each chunk the
 * client takes is progress for the time budget.
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
  /** The body ended: the response ends once the queue is out. */
  let ending = false;
  /** Bytes the response cannot take yet (it wants a drain), in order. */
  let queue: Uint8Array[] = [];
  /** The next chunk of `queue` to send (an index: shift() would copy the array each time). */
  let next = 0;
  let queued = 0;
  let blocked = false;
  /** Drains so far (each: the client's side took what it had); the time budget's measure of progress. */
  let drains = 0;
  let drainsAtArm = 0;
  const arm = () => {
    entry.deadline = performance.now() + slowReaderTimeoutMs;
    drainsAtArm = drains;
  };
  const budget = deps.lagBudget ?? lagBudget;
  const release = () => {
    // Dropped unsent: garbage for the collector (reclaim.ts) to give back.
    passed(queued);
    budget.adjust(-queued);
    budget.leave(laggard);
    queue = [];
    next = 0;
    queued = 0;
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
    // Events still waiting here were followed by the tap but never reach the client: the watch
    // cannot be carried on from the tap's last version, only ended (the client re-watches).
    if (queued && ctx.plan?.progress) ctx.plan.progress.partial = true;
    release();
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
      buffered: queued + res.writableLength,
    });
    const clean = !stopped && isWatch && frames?.whole === true;
    if (!stopped) stop();
    // Released at once: what waits here is never sent.
    release();
    if (!clean) return void res.destroy();
    // The apiserver's end of a watcher that cannot keep up: the chunked answer ends after the
    // last whole event the response holds. The end waits behind what the client has not taken
    // (at most a chunk or two): one more budget, then the connection goes.
    res.end();
    if (res.writableFinished) return;
    track(deps.inflight, entry);
    arm();
  };

  const send = (out: Uint8Array) => {
    if (blocked) {
      queue.push(out);
      queued += out.byteLength;
      // Over the process's budget, the largest queue (maybe this one) goes.
      budget.adjust(out.byteLength);
      if (!gaveUp && queued + res.writableLength > bound) tooSlow("bytes");
    } else if (!res.write(out)) {
      blocked = true;
      // Any answer but a watch waits for its client: pausing the body stops the cloud's socket for
      // real (the upstream connection's read gate), so a slow but steady reader of a large LIST is
      // served whole; only the time budget (no progress) cuts it. A watch is read on, and ended at
      // its bound as the apiserver ends a watcher that cannot keep up.
      if (!isWatch) body.pause();
      if (!entry.deadline) arm();
    }
  };
  const onDrain = () => {
    drains++;
    blocked = false;
    while (next < queue.length && !blocked) {
      const c = queue[next];
      queue[next++] = EMPTY; // sent: no longer held here
      queued -= c.byteLength;
      budget.adjust(-c.byteLength);
      blocked = !res.write(c);
    }
    if (next === queue.length) {
      queue = [];
      next = 0;
    } else if (next >= 1024) {
      queue = queue.slice(next);
      next = 0;
    }
    if (blocked) return;
    if (!isWatch && !stopped) body.resume();
    if (ending) {
      ending = false;
      res.end();
    }
    entry.deadline = 0;
    if (!res.writableFinished && res.writableEnded) arm();
  };
  res.on("drain", onDrain);
  const laggard = {
    get queued() {
      return queued;
    },
    evict: () => tooSlow("bytes"),
  };
  budget.join(laggard);

  const onData = (c: Uint8Array) => {
    const out = frames ? frames.push(c) : c;
    if (out.byteLength) send(out);
  };
  const onEnd = () => {
    // The stream's last bytes go as they are, before detach() would drop them.
    const rest = frames?.flush();
    detach();
    if (rest?.byteLength) send(rest);
    if (blocked) ending = true;
    else res.end();
    if (!res.writableFinished && !entry.deadline) arm();
  };
  body.on("data", onData);
  body.once("end", onEnd);

  // The time budget: a client that took nothing since the last check is past it.
  entry.expire = () => {
    if (res.writableFinished || res.destroyed) return;
    if (drains > drainsAtArm) return arm();
    if (gaveUp) return void res.destroy();
    tooSlow("time");
  };
  const done = () => {
    entry.deadline = 0;
    deps.inflight.delete(entry);
    res.off("drain", onDrain);
    release();
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
    // What waits is dropped: the response ends after the last whole event it holds.
    release();
    endWatch(ctx);
  };
  return cut;
}

/** What a cut watch gets when nothing carries it on: a clean end, so the client re-watches. */
export function endWatch(ctx: RequestContext): void {
  if (!ctx.res.writableEnded) ctx.res.end();
}
