/**
 * Wires the proxy together: listener → identity → online proxy / offline cache → store, plus the
 * health checker, certificate watchers and eviction. `startServer` returns once it is serving.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { ServeConfig } from "./config/serve_config.ts";
import { describeConfig } from "./config/serve_config.ts";
import { ConfigError } from "./config/errors.ts";
import { configureLog, log, logEnabled } from "./log.ts";
import { type Listener, type Peer, startListener } from "./listener/https_listener.ts";
import { describeIdentity, resolveIdentity } from "./identity/resolve.ts";
import { parseRequestInfo } from "./request/request_info.ts";
import { representationOf } from "./request/representation.ts";
import { SelectorError } from "./request/selectors.ts";
import { cacheKeyFor } from "./cache/cache_key.ts";
import { tokenRequestPlan } from "./cache/token_requests.ts";
import { Evictor } from "./cache/evictor.ts";
import type { CachePlan } from "./cache/response_tap.ts";
import { Cache } from "./cache/cache.ts";
import { WriteQueue } from "./cache/write_queue.ts";
import { openStore } from "./store/open_store.ts";
import type { Store } from "./store/store.ts";
import { UpstreamAgents } from "./upstream/agents.ts";
import { UpstreamHealth } from "./upstream/health.ts";
import type { RequestContext } from "./proxy/context.ts";
import { abandonInFlight, forward, type InFlight, readSmallBody, retireAgent } from "./proxy/forward.ts";
import { tunnelUpgrade } from "./proxy/upgrade.ts";
import { sendStatus } from "./proxy/status.ts";
import { HeldWatches } from "./offline/held_watches.ts";
import { cachedReadAnswer, serveOffline } from "./offline/serve_offline.ts";
import { sendCached } from "./offline/send.ts";
import { ProxyMetrics } from "./admin/metrics.ts";
import { type AdminServer, startAdminServer } from "./admin/admin_server.ts";
import { ClientPairWatcher, loadServingMaterial, loadTlsConfig, ServingWatcher } from "./certs/mod.ts";
import type { Identity } from "./identity/identity.ts";
import type { RequestInfo } from "./request/request_info.ts";
import type { Representation } from "./request/representation.ts";

export interface RunningServer {
  config: ServeConfig;
  listener: Listener;
  store: Store;
  cache: Cache;
  health: UpstreamHealth;
  agents: UpstreamAgents;
  watches: HeldWatches;
  metrics: ProxyMetrics;
  pairs?: ClientPairWatcher;
  /** The admin listener (/healthz, /readyz, /metrics, /status), unless --admin-port 0. */
  admin?: AdminServer;
  serving: ServingWatcher;
  /** Re-reads certificates (SIGHUP). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

const CACHEABLE_REPS = new Set<Representation>(["json", "table", "pom", "pomlist", "apidiscovery"]);
const NOT_CACHED_PATHS = /^\/(healthz|livez|readyz|metrics|logs|debug)(\/|$)/;

/** What to cache for a request (and so what may be served from the cache), if anything. */
export function planFor(
  identity: Identity,
  info: RequestInfo,
  rep: Representation,
  method: string,
  body?: Uint8Array,
): CachePlan | undefined {
  if (method === "POST" && body) return tokenRequestPlan(identity, info, rep, body);
  if (method !== "GET" || !CACHEABLE_REPS.has(rep)) return undefined;
  if (!info.isResourceRequest) {
    if (NOT_CACHED_PATHS.test(info.path) || info.verb !== "get") return undefined;
    return { kind: "object", key: cacheKeyFor(identity.cacheId, info, rep), requestContinue: "" };
  }
  const key = cacheKeyFor(identity.cacheId, info, rep);
  const requestContinue = info.query.get("continue") ?? "";
  switch (info.verb) {
    case "get":
      return { kind: "object", key, requestContinue };
    case "list":
      if (rep === "json") return { kind: "list", key, requestContinue };
      // Other list shapes (Tables) are stored whole: only complete, unpaged answers.
      return requestContinue ? undefined : { kind: "object", key, requestContinue, wholeListOnly: true };
    case "watch":
      return rep === "json" ? { kind: "watch", key, requestContinue } : undefined;
    default:
      return undefined;
  }
}

export async function startServer(config: ServeConfig): Promise<RunningServer> {
  configureLog({ level: config.logLevel, format: config.logFormat });
  for (const n of config.notices) log.info(n);

  const serving = await loadServingMaterial(config.tlsCertFile, config.tlsKeyFile, config.caFile);
  const upstreamCa = config.apiserverCaFile === config.caFile
    ? serving.caPem
    : await readCa(config.apiserverCaFile);
  const pairs = config.tlsConfigFile
    ? await loadTlsConfig(config.tlsConfigFile, serving.caPem, { allowMissing: true })
    : [];

  const store = await openStore({ backend: config.cacheBackend, dir: config.cacheDir });
  const queue = new WriteQueue(store, config.writeQueueBytes);
  const cache = new Cache(store, queue);
  const agents = new UpstreamAgents(upstreamCa, pairs);
  const metrics = new ProxyMetrics();
  const health = new UpstreamHealth({
    endpoints: config.upstreams,
    intervalMs: config.healthIntervalMs,
    failures: config.healthFailures,
    timeoutMs: Math.min(config.backendTimeoutMs, Math.max(config.healthIntervalMs, 500)),
    agent: () => agents.anonymous(),
  });
  const watches = new HeldWatches({ bookmarkIntervalMs: Math.max(1000, config.healthIntervalMs) });
  const inflight = new Set<InFlight>();
  let servingNow = serving;

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
  const unreachable = (ctx: RequestContext, reason: string) => {
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
  };

  const failed = (ctx: RequestContext, err: unknown) => {
    log.error("request failed", { path: ctx.info.path, error: (err as Error).message });
    sendStatus(ctx.res, 500, `lite-apiserver: internal error: ${(err as Error).message}`);
  };

  const handleRequest = async (req: IncomingMessage, res: ServerResponse, peer: Peer) => {
    const identity = resolveIdentity(peer, req.headers, (cn) => agents.hasPair(cn));
    const info = parseRequestInfo(req.method ?? "GET", req.url ?? "/");
    const rep = representationOf(req.headers.accept);
    const ctx: RequestContext = {
      req,
      res,
      peer,
      identity,
      info,
      rep,
      startedAt: performance.now(),
      source: "local",
    };
    try {
      const reading = readSmallBody(ctx);
      if (reading) await reading;
      try {
        ctx.plan = planFor(identity, info, rep, req.method ?? "GET", ctx.body);
      } catch (err) {
        if (!(err instanceof SelectorError)) throw err;
        // The upstream words its own errors; offline we answer as it would.
        if (!health.online) return sendStatus(res, 400, err.message);
      }
      if (!health.online) return await serveOffline(ctx, offlineDeps, "health checks are failing");
      forward(ctx, forwardDeps);
    } catch (err) {
      failed(ctx, err);
    }
  };

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Uint8Array, peer: Peer) => {
    const identity = resolveIdentity(peer, req.headers, (cn) => agents.hasPair(cn));
    tunnelUpgrade(req, socket, head, identity, { agents, health, backendTimeoutMs: config.backendTimeoutMs });
  };

  let listener: Listener;
  try {
    listener = await startListener({
      addresses: config.addresses,
      port: config.port,
      serving,
      handlers: {
        request: (req, res, peer) => void handleRequest(req, res, peer),
        upgrade: handleUpgrade,
      },
    });
  } catch (e) {
    health.close();
    agents.destroy();
    await store.close();
    throw e;
  }

  health.start();
  health.onChange((online) => {
    metrics.transitions.inc({ state: online ? "online" : "offline" });
    if (online) {
      const n = watches.endAll();
      if (n) log.info("ended held offline watches so clients relist from the cloud", { watches: n });
    } else abandonInFlight(inflight);
  });

  // Certificates: follow rotations without a restart.
  let pairWatcher: ClientPairWatcher | undefined;
  if (config.tlsConfigFile) {
    pairWatcher = new ClientPairWatcher({
      tlsConfigFile: config.tlsConfigFile,
      caPem: () => servingNow.caPem,
    });
    pairWatcher.onChange((cn, pair) => {
      const old = agents.setPair(cn, pair, true);
      if (old) retireAgent(old, inflight);
      log.info(pair ? "client identity loaded" : "client identity removed", { cn, serial: pair?.serial });
    });
    await pairWatcher.start(pairs);
  }

  const servingWatcher = new ServingWatcher({
    certFile: config.tlsCertFile,
    keyFile: config.tlsKeyFile,
    caFile: config.caFile,
  });
  servingWatcher.onChange((m) => {
    const caChanged = m.caPem !== servingNow.caPem;
    servingNow = m;
    listener.setSecureContext(m);
    if (caChanged && config.apiserverCaFile === config.caFile) agents.setCa(m.caPem);
    // Client pairs are re-checked against a new CA.
    if (caChanged) pairWatcher?.reloadNow();
    log.info("serving certificate reloaded", { caChanged });
  });
  await servingWatcher.start(serving);

  const evictor = new Evictor(store, config.evictAfterMs, () => health.online);
  evictor.start();

  // Admin listener (observability): after the main listener, so /readyz never precedes serving.
  let admin: AdminServer | undefined;
  if (config.adminPort !== 0) {
    try {
      admin = await startAdminServer({
        address: config.adminAddress,
        port: config.adminPort,
        health,
        store,
        queue,
        watches,
        metrics,
        pairs: pairWatcher,
      });
    } catch (e) {
      evictor.stop();
      health.close();
      await pairWatcher?.close();
      await servingWatcher.close();
      await listener.close();
      agents.destroy();
      await store.close();
      throw e;
    }
    log.info(`admin listening on ${admin.url}`);
  }

  log.info(`lite-apiserver listening on ${listener.addresses.map((a) => `https://${a}`).join(", ")}`, {
    state: health.online ? "online" : "offline",
  });
  log.info("configuration", { summary: describeConfig({ ...config, port: listener.port }) });

  return {
    config,
    listener,
    store,
    cache,
    health,
    agents,
    watches,
    metrics,
    pairs: pairWatcher,
    admin,
    serving: servingWatcher,
    async reload() {
      await servingWatcher.reloadNow();
      await pairWatcher?.reloadNow();
    },
    async close() {
      await admin?.close();
      evictor.stop();
      health.close();
      await pairWatcher?.close();
      await servingWatcher.close();
      watches.endAll();
      abandonInFlight(inflight);
      await listener.close();
      agents.destroy();
      await queue.flush();
      await store.close();
    },
  };
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`--apiserver-ca-file ${path}: cannot read: ${(e as Error).message}`);
  }
}
