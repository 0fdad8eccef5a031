/**
 * Routes each request: who it is (identity), what it asks (request info, representation), what
 * the cache keeps of it (plan), then online to the upstream or offline to the cache. Also
 * counts and logs each answer. It sits above both paths (proxy/: online, offline/: from the cache),
 * which do not import each other: the closures it hands the online path (unreachable, watch cut,
 * slow read) are how an online request falls back to the offline one.
 */
import type { ServerRequest } from "./http/request.ts";
import type { ServerResponse } from "./http/response.ts";
import type { Duplex } from "node:stream";
import type { ServeConfig } from "./config/serve_config.ts";
import { log, logEnabled } from "./log.ts";
import type { Peer } from "./listener/https_listener.ts";
import { describeIdentity, resolveIdentity } from "./identity/resolve.ts";
import { parseRequestInfo } from "./request/request_info.ts";
import { representationOf } from "./request/representation.ts";
import { SelectorError } from "./request/selectors.ts";
import { planFor } from "./cache/cache_plan.ts";
import type { Cache } from "./cache/cache.ts";
import type { UpstreamAgents } from "./upstream/agents.ts";
import type { UpstreamHealth } from "./upstream/health.ts";
import type { HeldWatches, ResumeWatch } from "./offline/held_watches.ts";
import { cachedReadAnswer, serveOffline } from "./offline/serve_offline.ts";
import { sendCached } from "./offline/send.ts";
import type { ProxyMetrics } from "./admin/metrics.ts";
import type { RequestContext } from "./exchange/context.ts";
import { sendStatus } from "./exchange/status.ts";
import { forward } from "./proxy/forward.ts";
import type { InFlightSet } from "./proxy/deadlines.ts";
import type { SlowReader } from "./proxy/slow_reader.ts";
import { readSmallBody } from "./proxy/request_body.ts";
import { refuseUpgrade, tunnelUpgrade } from "./proxy/upgrade.ts";
import { identityNamedInConnection } from "./proxy/headers.ts";
import { resumeContext } from "./proxy/watch_resume.ts";
import { answerRewriteFor, type KubernetesServiceRewrite } from "./rewrite/answer_rewrite.ts";

export interface RouterDeps {
  agents: UpstreamAgents;
  health: UpstreamHealth;
  cache: Cache;
  watches: HeldWatches;
  metrics: ProxyMetrics;
  inflight: InFlightSet;
  config: Pick<
    ServeConfig,
    "backendTimeoutMs" | "writeTimeoutMs" | "watchBufferBytes" | "answerBufferBytes" | "slowReaderTimeoutMs"
  >;
  /** In-cluster clients: how kube-proxy is shown the `kubernetes` Service (undefined: off). */
  kubernetesService?: KubernetesServiceRewrite;
}

export interface Router {
  request(req: ServerRequest, res: ServerResponse, peer: Peer): void;
  upgrade(req: ServerRequest, socket: Duplex, head: Uint8Array, peer: Peer): void;
  /** Re-attaches a held watch to the cloud (HeldWatches.cloudBack). */
  resumeWatch: ResumeWatch;
}

/** Why a request whose Connection field names an identity header is refused. */
function connectionNamesIdentity(name: string): string {
  return `the Connection header names ${name}, which says who the request is: ` +
    "lite-apiserver does not drop identity headers as hop-by-hop";
}

/** A watch cut while the cloud looks up (a stream error) is resumed after this, not in a loop. */
const RESUME_AFTER_CUT_MS = 1000;

export function createRouter(deps: RouterDeps): Router {
  const { agents, health, cache, watches, metrics, inflight, config } = deps;
  const debug = logEnabled("debug");
  const observe = (ctx: RequestContext, status: number, upstreamMs?: number) => {
    const { info } = ctx;
    const resource = info.isResourceRequest
      ? (info.subresource ? `${info.resource}/${info.subresource}` : info.resource)
      : "nonresource";
    metrics.requests.inc4(info.verb, resource, status, ctx.source);
    if (upstreamMs !== undefined) metrics.upstreamLatency.observe(upstreamMs / 1000);
    if (debug) {
      log.debug("request", {
        method: ctx.req.method,
        path: info.path,
        identity: describeIdentity(ctx.identity),
        status,
        source: ctx.source,
        ms: Math.round(performance.now() - ctx.startedAt),
      });
    }
  };
  const offlineDeps = { cache, watches, observe };
  // A watch whose upstream stream dies is held from the cache, and resumed when the cloud is
  // back (at once if it never looked down: after a short pause, so a failing cloud is not hammered).
  const resumeWatch: ResumeWatch = (ctx, fromRv) => forward(resumeContext(ctx, fromRv), forwardDeps);
  const watchCut = (ctx: RequestContext) => {
    const client = ctx.resumes ?? ctx;
    if (!watches.adopt(client) || !health.online) return;
    health.probeSoon();
    setTimeout(() => {
      if (health.online) watches.cloudBack(resumeWatch, client);
    }, RESUME_AFTER_CUT_MS);
  };
  const unreachable = (ctx: RequestContext, reason: string) => {
    // A resumed watch that cannot reach the cloud goes back to being held.
    if (ctx.resumes) return watchCut(ctx);
    serveOffline(ctx, offlineDeps, reason).catch((err) => failed(ctx, err));
  };
  const slowRead = async (ctx: RequestContext) => {
    const answer = await cachedReadAnswer(ctx, cache);
    if (!answer) return undefined;
    return () => {
      ctx.source = "cache";
      observe(ctx, 200);
      sendCached(ctx, answer.body, answer.contentType).catch((err) => failed(ctx, err));
    };
  };
  const forwardDeps = {
    slowRead,
    agents,
    health,
    cache,
    backendTimeoutMs: config.backendTimeoutMs,
    writeTimeoutMs: config.writeTimeoutMs,
    inflight,
    unreachable,
    observe,
    // An upstream watch cut mid-answer (or when the cloud goes offline): held from the cache.
    watchCut,
    bounds: {
      watchBufferBytes: config.watchBufferBytes,
      answerBufferBytes: config.answerBufferBytes,
      slowReaderTimeoutMs: config.slowReaderTimeoutMs,
    },
    slowReader: (_ctx: RequestContext, what: SlowReader) => metrics.slowReaders.inc({ ...what }),
  };

  const failed = (ctx: RequestContext, err: unknown) => {
    log.error("request failed", { path: ctx.info.path, error: (err as Error).message }, "request.failed");
    sendStatus(ctx.res, 500, `lite-apiserver: internal error: ${(err as Error).message}`);
  };

  /** Who is asking (identity) and what (request info, representation). */
  const contextFor = (req: ServerRequest, res: ServerResponse, peer: Peer): RequestContext => {
    const identity = resolveIdentity(peer, req, (cn, groups) => agents.hasPair(cn, groups));
    const info = parseRequestInfo(req.method ?? "GET", req.url ?? "/");
    return {
      req,
      res,
      peer,
      identity,
      info,
      rep: representationOf(req.headers.accept),
      startedAt: performance.now(),
      source: "local",
      // In-cluster clients (issue 12): how kube-proxy is shown the `kubernetes` Service.
      rewrite: answerRewriteFor(deps.kubernetesService, identity, info, req.headers),
    };
  };

  /** A small body read up front, and what the cache keeps of the answer. False: answered already. */
  const prepare = async (ctx: RequestContext): Promise<boolean> => {
    const reading = readSmallBody(ctx);
    if (reading) await reading;
    try {
      ctx.plan = planFor(ctx.identity, ctx.info, ctx.rep, ctx.req.method ?? "GET", ctx.body);
    } catch (err) {
      if (!(err instanceof SelectorError)) throw err;
      // The upstream words its own errors; offline we answer as it would.
      if (!health.online) {
        sendStatus(ctx.res, 400, err.message);
        return false;
      }
    }
    return true;
  };

  const handleRequest = async (req: ServerRequest, res: ServerResponse, peer: Peer) => {
    const ctx = contextFor(req, res, peer);
    const named = identityNamedInConnection(req.headers);
    if (named) {
      observe(ctx, 400);
      return sendStatus(res, 400, connectionNamesIdentity(named));
    }
    try {
      if (!await prepare(ctx)) return;
      if (health.online) forward(ctx, forwardDeps);
      else await serveOffline(ctx, offlineDeps, "health checks are failing");
    } catch (err) {
      failed(ctx, err);
    }
  };

  const handleUpgrade = (req: ServerRequest, socket: Duplex, head: Uint8Array, peer: Peer) => {
    const named = identityNamedInConnection(req.headers);
    if (named) return refuseUpgrade(socket, 400, connectionNamesIdentity(named));
    const identity = resolveIdentity(peer, req, (cn, groups) => agents.hasPair(cn, groups));
    tunnelUpgrade(req, socket, head, identity, { agents, health, backendTimeoutMs: config.backendTimeoutMs });
  };

  return {
    request: (req, res, peer) => void handleRequest(req, res, peer),
    upgrade: handleUpgrade,
    resumeWatch,
  };
}
