/**
 * Online path: forwards a request to the upstream with the caller's own credentials, streams the
 * answer back (status and end-to-end headers preserved), and taps cacheable answers.
 * A connection failure moves to the next endpoint; a read that gets no answer in time is handed
 * to `unreachable` (served from the cache).
 */
import https from "node:https";
import type { ClientRequest, IncomingMessage } from "node:http";
import type { RequestContext } from "./context.ts";
import type { UpstreamAgents } from "../upstream/agents.ts";
import type { UpstreamHealth } from "../upstream/health.ts";
import type { Cache } from "../cache/cache.ts";
import { tapResponse } from "../cache/response_tap.ts";
import { endToEnd, preferJson } from "./headers.ts";
import { sendStatus } from "./status.ts";
import { log } from "../log.ts";

export interface InFlight {
  ctx: RequestContext;
  upstream: ClientRequest;
  agent: https.Agent;
  /** Response headers were sent to the client. */
  responding: boolean;
  /** The upstream became unreachable. */
  abort(): void;
  /** performance.now() by which a read must have its response headers (0: no deadline). */
  deadline: number;
  /** Called when the deadline passes. */
  expire(): void;
}

const SWEEP_MS = 10;
let sweeping: { timer: ReturnType<typeof setInterval>; sets: Set<Set<InFlight>> } | undefined;

/**
 * Backend timeouts are checked by one shared sweep rather than a timer per request: creating and
 * clearing a timer per request was a measurable share of the proxy's CPU.
 */
function watchDeadlines(inflight: Set<InFlight>): void {
  if (!sweeping) {
    const sets = new Set<Set<InFlight>>();
    const timer = setInterval(() => {
      const now = performance.now();
      for (const set of sets) {
        if (set.size === 0) sets.delete(set);
        for (const e of set) if (e.deadline && now >= e.deadline) e.expire();
      }
      if (sets.size === 0) {
        clearInterval(timer);
        sweeping = undefined;
      }
    }, SWEEP_MS);
    sweeping = { timer, sets };
  }
  sweeping.sets.add(inflight);
}

export interface ForwardDeps {
  agents: UpstreamAgents;
  health: UpstreamHealth;
  cache: Cache;
  backendTimeoutMs: number;
  /** A write with no response headers by then is answered 504. */
  writeTimeoutMs: number;
  inflight: Set<InFlight>;
  /** Called when no endpoint answered: serve from the cache, or say so. */
  unreachable(ctx: RequestContext, reason: string): void;
  /** The cache's answer to a slow read, sent by the callback (undefined: nothing cached). */
  slowRead(ctx: RequestContext): Promise<(() => void) | undefined>;
  observe(ctx: RequestContext, status: number, upstreamMs?: number): void;
  /** A watch's upstream stream died or froze mid-answer: the client's stream is carried on. */
  watchCut(ctx: RequestContext): void;
}

const MAX_BUFFERED_BODY = 1 << 20;

/** Reads a small request body up front so that it can be sent again to another endpoint. */
/** undefined when there is nothing to read (no extra turn of the event loop for a GET). */
export function readSmallBody(ctx: RequestContext): Promise<void> | undefined {
  const len = Number(ctx.req.headers["content-length"] ?? "NaN");
  const method = ctx.req.method ?? "GET";
  if (!(len > 0 && len <= MAX_BUFFERED_BODY) || method === "GET" || method === "HEAD") {
    return undefined;
  }
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    ctx.req.on("data", (c: Uint8Array) => chunks.push(c));
    ctx.req.on("end", () => {
      ctx.body = Buffer.concat(chunks);
      resolve();
    });
    ctx.req.on("error", reject);
  });
}

function isConnectError(err: NodeJS.ErrnoException): boolean {
  return [
    "ECONNREFUSED",
    "ECONNRESET",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "ETIMEDOUT",
    "EPIPE",
    "ENOTFOUND",
    "EAI_AGAIN",
  ]
    .includes(err.code ?? "") || /timeout|socket hang up|offline/i.test(err.message);
}

interface Target {
  host: string;
  hostname: string;
  port: number;
  prefix: string;
  servername?: string;
}
const targets = new Map<string, Target>();

/** An endpoint URL taken apart once, not per request. */
function target(url: string): Target {
  let t = targets.get(url);
  if (!t) {
    const u = new URL(url);
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    t = {
      host: u.host,
      hostname,
      port: Number(u.port || 443),
      prefix: u.pathname.replace(/\/$/, ""),
      servername: /^[\d.]+$|:/.test(hostname) ? undefined : hostname,
    };
    targets.set(url, t);
  }
  return t;
}

export function forward(ctx: RequestContext, deps: ForwardDeps): void {
  const endpoints = deps.health.order();
  const isRead = ctx.req.method === "GET" || ctx.req.method === "HEAD";
  const replayable = ctx.body !== undefined ||
    !ctx.req.headers["content-length"] && !ctx.req.headers["transfer-encoding"];
  let clientGone = false;
  let current: InFlight | undefined;
  // One close listener per request: marks the client gone and stops an unfinished upstream call.
  ctx.res.once("close", () => {
    clientGone = true;
    if (!current) return;
    deps.inflight.delete(current);
    if (!ctx.res.writableFinished) current.upstream.destroy();
  });

  const attempt = (i: number) => {
    const ep = endpoints[i];
    const base = target(ep.url);
    const headers = endToEnd(ctx.req.headers);
    headers.host = base.host;
    // JSON is negotiated where the cache or an answer rewrite must read the answer.
    if ((ctx.plan || ctx.rewrite) && ctx.req.headers.accept) {
      headers.accept = preferJson(ctx.req.headers.accept);
    }
    if (ctx.body) headers["content-length"] = ctx.body.byteLength;
    // Answer rewrite (in-cluster clients, issue 12): ask for an unencoded answer it can read.
    if (ctx.rewrite) delete headers["accept-encoding"];
    const started = performance.now();
    const agent = deps.agents.agentFor(ctx.identity);
    const upstream = https.request({
      protocol: "https:",
      hostname: base.hostname,
      port: base.port,
      path: base.prefix + ctx.req.url,
      method: ctx.req.method,
      headers,
      agent,
      servername: base.servername,
    });
    // Deno's node:http client neither reports an error for a destroyed request on a reused
    // keep-alive socket nor stops retrying it, so failures are settled here, once, by us.
    let answered = false;
    let failedOnce = false;
    const fail = (err: NodeJS.ErrnoException, destroy: boolean) => {
      if (answered || failedOnce) return;
      failedOnce = true;
      entry.deadline = 0;
      deps.inflight.delete(entry);
      if (destroy) {
        upstream.socket?.destroy();
        upstream.destroy();
      }
      if (clientGone) return;
      const offline = err.message === "offline";
      if (!offline) deps.health.reportFailure(ep.url, err.message);
      log.debug("upstream attempt failed", { endpoint: ep.url, error: err.message });
      if (!offline && i + 1 < endpoints.length && replayable && isConnectError(err)) return attempt(i + 1);
      if (isRead || offline || ctx.plan) return deps.unreachable(ctx, err.message);
      if (err.code === "EWRITETIMEOUT") {
        deps.observe(ctx, 504);
        return sendStatus(
          ctx.res,
          504,
          `the cloud kube-apiserver gave no answer (${err.message}); the request may or may not have been applied`,
          { reason: "Timeout" },
        );
      }
      deps.observe(ctx, 503);
      sendStatus(
        ctx.res,
        503,
        `the cloud kube-apiserver is unreachable (${err.message}); the request was not applied`,
        { retryAfter: 1 },
      );
    };
    const entry: InFlight = {
      // A read must start answering within the backend timeout, else the cache answers it; a
      // write gets the apiserver's own request timeout, so one stuck behind a dead link ends.
      deadline: performance.now() + (isRead ? deps.backendTimeoutMs : deps.writeTimeoutMs),
      // No response headers within the backend timeout: the cache answers if it can; if it
      // holds nothing for this read, waiting on for a slow but healthy upstream beats a 503.
      expire: async () => {
        entry.deadline = 0;
        if (!isRead) {
          return fail(
            Object.assign(new Error(`no answer within ${deps.writeTimeoutMs}ms`), { code: "EWRITETIMEOUT" }),
            true,
          );
        }
        let send: (() => void) | undefined;
        try {
          send = await deps.slowRead(ctx);
        } catch {
          send = undefined;
        }
        if (answered || failedOnce || clientGone) return;
        if (!send) {
          log.debug("slow upstream and nothing cached: still waiting", { path: ctx.info.path });
          return;
        }
        failedOnce = true;
        deps.inflight.delete(entry);
        upstream.socket?.destroy();
        upstream.destroy();
        // Slow is not down: the probes decide whether the cloud is gone.
        deps.health.probeSoon();
        send();
      },
      ctx,
      upstream,
      agent,
      responding: false,
      abort: () => {
        if (!answered) {
          // Reads are answered from the cache; a write in flight keeps its chance to complete.
          if (isRead) fail(Object.assign(new Error("offline"), { code: "EOFFLINE" }), true);
          return;
        }
        // Mid-answer: a watch is held from the cache (offline/held_watches.ts).
        if (ctx.info.verb === "watch") {
          deps.watchCut(ctx);
          upstream.socket?.destroy();
          upstream.destroy();
        }
      },
    };
    deps.inflight.add(entry);
    current = entry;
    watchDeadlines(deps.inflight);

    upstream.on("response", (ures: IncomingMessage) => {
      if (failedOnce) {
        ures.resume();
        return;
      }
      answered = true;
      entry.deadline = 0;
      entry.responding = true;
      const status = ures.statusCode ?? 502;
      if (clientGone) {
        ures.resume();
        upstream.destroy();
        return;
      }
      ctx.source = "upstream";
      deps.observe(ctx, status, performance.now() - started);
      // Answer rewrite hook (in-cluster clients, issue 12): a Transform between the upstream body
      // and the client; the body changes length, so it goes out chunked. The tap sees the truth.
      const rewrite = ctx.rewrite?.stream(status, ures.headers);
      const headers = endToEnd(ures.headers);
      if (rewrite) delete headers["content-length"];
      ctx.res.writeHead(status, ures.statusMessage, headers);
      if (ctx.info.verb === "watch") ctx.res.flushHeaders();
      if (ctx.plan) tapResponse(deps.cache, ctx.plan, ures);
      if (rewrite) ures.pipe(rewrite).pipe(ctx.res);
      else ures.pipe(ctx.res);
      // Cut mid-answer: a watch is held from the cache, a truncated body is cut off.
      const cut = () => {
        if (ctx.info.verb === "watch") deps.watchCut(ctx);
        else if (!ctx.res.writableFinished) ctx.res.destroy();
      };
      ures.on("aborted", cut);
      ures.on("error", cut);
      ures.once("close", () => deps.inflight.delete(entry));
    });

    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (answered) {
        if (ctx.info.verb === "watch") deps.watchCut(ctx);
        else if (!ctx.res.writableFinished) ctx.res.destroy();
        return;
      }
      fail(err, false);
    });

    if (ctx.body) upstream.end(ctx.body);
    else if (isRead && !ctx.req.headers["content-length"]) upstream.end();
    else ctx.req.pipe(upstream);
  };
  attempt(0);
}

/**
 * Retires a replaced connection pool: watches on it end cleanly (clients re-establish them with
 * the new identity), other requests finish, then its connections are closed.
 */
export function retireAgent(old: https.Agent, inflight: Set<InFlight>, graceMs = 30_000): void {
  for (const e of inflight) {
    if (e.agent === old && e.ctx.info.verb === "watch" && e.responding) {
      if (!e.ctx.res.writableEnded) e.ctx.res.end();
      e.upstream.socket?.destroy();
      e.upstream.destroy();
      inflight.delete(e);
    }
  }
  const deadline = Date.now() + graceMs;
  const sweep = () => {
    const busy = [...inflight].some((e) => e.agent === old);
    if (!busy || Date.now() > deadline) old.destroy();
    else setTimeout(sweep, 200);
  };
  sweep();
}

/** Going offline: requests still waiting on the upstream are answered from the cache, watches end. */
export function abandonInFlight(inflight: Set<InFlight>): void {
  for (const entry of [...inflight]) entry.abort();
}
