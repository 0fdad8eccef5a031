/**
 * Wires the proxy together: listener → identity → online proxy / offline cache → store, plus the
 * health checker, certificate watchers and eviction. Every part that is started registers how it
 * stops on one stack, so a failed start and a shutdown both close what is open, once, in reverse
 * order of start. What happens on online/offline/pair/serving changes is in server_policies.ts.
 */
import type { ServeConfig } from "./config/serve_config.ts";
import { describeConfig } from "./config/serve_config.ts";
import { ConfigError } from "./config/errors.ts";
import { configureLog, log } from "./log.ts";
import { type Listener, startListener } from "./listener/https_listener.ts";
import { Evictor } from "./cache/evictor.ts";
import { Cache } from "./cache/cache.ts";
import { WriteQueue } from "./cache/write_queue.ts";
import { openStore } from "./store/open_store.ts";
import type { Store } from "./store/store.ts";
import { UpstreamAgents } from "./upstream/agents.ts";
import { UpstreamHealth } from "./upstream/health.ts";
import { abandonInFlight, InFlightSet } from "./proxy/deadlines.ts";
import { createRouter } from "./router.ts";
import { Timers } from "./timers.ts";
import { statusBody } from "./exchange/status.ts";
import { HeldWatches } from "./offline/held_watches.ts";
import { listedKind } from "./offline/cached_lists.ts";
import { ProxyMetrics } from "./admin/metrics.ts";
import { type AdminServer, startAdminServer } from "./admin/admin_server.ts";
import {
  ClientPairWatcher,
  loadServingMaterial,
  loadTlsConfig,
  type ServingMaterial,
  ServingWatcher,
} from "./certs/mod.ts";
import { inClusterSupport } from "./in_cluster.ts";
import {
  abandonInFlightOffline,
  countTransitions,
  handHeldWatchesBack,
  propagateServing,
  serverEvents,
  swapPairPools,
} from "./server_policies.ts";

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
  /** Stops everything that was started, in reverse order (idempotent). */
  close(): Promise<void>;
}

/**
 * A TLS handshake to the cloud takes 2-3 round trips: 700 ms allows ~200 ms RTT links and a cold
 * start on a loaded node (a late handshake still brings the cloud back at once).
 */
const START_CONNECT_TIMEOUT_MS = 700;

export async function startServer(config: ServeConfig): Promise<RunningServer> {
  configureLog({ level: config.logLevel, format: config.logFormat });
  for (const n of config.notices) log.info(n);
  const stack = new AsyncDisposableStack();
  // Last at shutdown: the summaries of rate-limited lines still counted are written, the timer stops.
  stack.defer(() => log.flush());
  try {
    return await start(config, stack);
  } catch (e) {
    await stack.disposeAsync();
    throw e;
  }
}

async function start(config: ServeConfig, stack: AsyncDisposableStack): Promise<RunningServer> {
  const { serving, upstreamCa, pairs } = await loadCertificates(config);
  const events = serverEvents();

  const { store, queue, cache } = await startCache(config, stack);
  // One timer service for the server's sweeps (connection, request and idle-connection deadlines).
  const timers = new Timers();
  stack.defer(() => timers.close());
  const agents = new UpstreamAgents(upstreamCa, pairs, {
    timers,
    http2: config.upstreamHttp2,
    h2: { readIdleMs: config.upstreamHttp2ReadIdleMs, pingTimeoutMs: config.upstreamHttp2PingTimeoutMs },
  });
  stack.defer(() => agents.destroy());
  const health = upstreamHealth(config, agents);
  health.onChange((online) => events.emit(online ? "online" : "offline"));
  // Probing starts before the listener: after an offline reboot the first verdict comes sooner.
  health.start();
  stack.defer(() => health.close());

  const metrics = new ProxyMetrics();
  const watches = new HeldWatches({
    bookmarkIntervalMs: Math.max(1000, config.healthIntervalMs),
    kindOf: (ctx) => listedKind(cache, ctx),
  });
  const inflight = new InFlightSet(timers);
  stack.defer(() => {
    watches.endAll();
    abandonInFlight(inflight, "shutdown");
  });
  const inCluster = inClusterSupport(config, { pairs, caPem: upstreamCa });
  const router = createRouter({
    agents,
    health,
    cache,
    watches,
    metrics,
    inflight,
    config,
    kubernetesService: inCluster.rewrite,
  });

  const listener = await startListener({
    addresses: config.addresses,
    port: config.port,
    serving,
    handlers: { request: router.request, upgrade: router.upgrade },
    limits: {
      headerTimeoutMs: config.requestHeaderTimeoutMs,
      maxRequestBodyBytes: config.maxRequestBodyBytes,
      maxConnections: config.maxConnections,
      maxAnonymousConnections: config.maxAnonymousConnections,
      tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
      maxPipelinedRequests: config.maxPipelinedRequests,
      requestBodyTimeoutMs: config.requestBodyTimeoutMs,
      requestBodyIdleTimeoutMs: config.requestBodyIdleTimeoutMs,
      requestBodyBufferBytes: config.requestBodyBufferBytes,
      http2: config.http2 === "on",
    },
    errorBody: statusBody,
    timers,
  });
  stack.defer(() => listener.close());
  inCluster.listening(listener.port, serving.certPem);

  // Certificates: follow rotations without a restart.
  let servingNow = serving;
  const pairWatcher = config.tlsConfigFile
    ? new ClientPairWatcher({ tlsConfigFile: config.tlsConfigFile, caPem: () => servingNow.caPem })
    : undefined;
  pairWatcher?.onChange((cn, pair) => events.emit("pair", cn, pair));
  await pairWatcher?.start(pairs);
  stack.defer(() => pairWatcher?.close());

  const servingWatcher = new ServingWatcher({
    certFile: config.tlsCertFile,
    keyFile: config.tlsKeyFile,
    caFile: config.caFile,
  });
  servingWatcher.onChange((m) => {
    const caChanged = m.caPem !== servingNow.caPem;
    servingNow = m;
    events.emit("serving", m, caChanged);
  });
  await servingWatcher.start(serving);
  stack.defer(() => servingWatcher.close());

  countTransitions(events, metrics);
  handHeldWatchesBack(events, watches, router);
  abandonInFlightOffline(events, inflight);
  swapPairPools(events, agents, inflight);
  propagateServing(events, {
    listener,
    agents,
    upstreamUsesClusterCa: config.apiserverCaFile === config.caFile,
    recheckPairs: () => void pairWatcher?.reloadNow(),
  });
  events.on("serving", (m) => inCluster.servingChanged(m.certPem));

  const evictor = new Evictor(store, config.evictAfterMs, () => health.online);
  evictor.start();
  stack.defer(() => evictor.stop());

  // Admin listener (observability): after the main listener, so /readyz never precedes serving.
  const admin = config.adminPort === 0 ? undefined : await startAdminServer({
    address: config.adminAddress,
    port: config.adminPort,
    health,
    store,
    queue,
    watches,
    metrics,
    pairs: pairWatcher,
    showIdentities: config.adminIdentities === "show",
  });
  if (admin) {
    stack.defer(() => admin.close());
    log.info(`admin listening on ${admin.url}`);
  }

  log.info(`lite-apiserver listening on ${listener.addresses.map((a) => `https://${a}`).join(", ")}`, {
    state: health.online ? "online" : "offline",
  });
  log.info("configuration", { summary: describeConfig({ ...config, port: listener.port }) });

  let closing: Promise<void> | undefined;
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
    close: () => closing ??= stack.disposeAsync(),
  };
}

async function startCache(config: ServeConfig, stack: AsyncDisposableStack) {
  const store = await openStore({ backend: config.cacheBackend, dir: config.cacheDir });
  stack.defer(() => store.close());
  const queue = new WriteQueue(store, config.writeQueueBytes);
  stack.defer(() => queue.flush());
  const cache = new Cache(store, queue, {
    maxWatchEventBytes: config.watchEventMaxBytes,
    bounds: config.cacheBounds,
  });
  // Bounds hold from the start, even if lowered; read in the background so that a large file-backend
  // cache never delays the first answer.
  cache.budget.load().catch((e) => log.warn("cannot read cache usage", { error: (e as Error).message }));
  return { store, queue, cache };
}

function upstreamHealth(config: ServeConfig, agents: UpstreamAgents): UpstreamHealth {
  return new UpstreamHealth({
    endpoints: config.upstreams,
    intervalMs: config.healthIntervalMs,
    failures: config.healthFailures,
    timeoutMs: Math.min(config.backendTimeoutMs, Math.max(config.healthIntervalMs, 500)),
    // Offline reboot: a black-holed cloud is known within this, not after the probe timeout.
    connectTimeoutMs: Math.min(config.backendTimeoutMs, START_CONNECT_TIMEOUT_MS),
    pool: () => agents.anonymous(),
  });
}

async function loadCertificates(config: ServeConfig) {
  const serving: ServingMaterial = await loadServingMaterial(
    config.tlsCertFile,
    config.tlsKeyFile,
    config.caFile,
  );
  const upstreamCa = config.apiserverCaFile === config.caFile
    ? serving.caPem
    : await readCa(config.apiserverCaFile);
  const pairs = config.tlsConfigFile
    ? await loadTlsConfig(config.tlsConfigFile, serving.caPem, { allowMissing: true })
    : [];
  return { serving, upstreamCa, pairs };
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`--apiserver-ca-file ${path}: cannot read: ${(e as Error).message}`);
  }
}
