/**
 * Wires the proxy together: listener → identity → online proxy / offline cache → store, plus the
 * health checker, certificate watchers and eviction. `startServer` returns once it is serving.
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
import { abandonInFlight, type InFlight, retireAgent } from "./proxy/forward.ts";
import { createRouter } from "./proxy/router.ts";
import { statusBody } from "./proxy/status.ts";
import { HeldWatches } from "./offline/held_watches.ts";
import { listedKind } from "./offline/cached_lists.ts";
import { ProxyMetrics } from "./admin/metrics.ts";
import { type AdminServer, startAdminServer } from "./admin/admin_server.ts";
import { ClientPairWatcher, loadServingMaterial, loadTlsConfig, ServingWatcher } from "./certs/mod.ts";
import { inClusterSupport } from "./in_cluster.ts";

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

/**
 * A TLS handshake to the cloud takes 2-3 round trips: 700 ms allows ~200 ms RTT links and a cold
 * start on a loaded node (a late handshake still brings the cloud back at once).
 */
const START_CONNECT_TIMEOUT_MS = 700;

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
  const cache = new Cache(store, queue, {
    maxWatchEventBytes: config.watchEventMaxBytes,
    bounds: config.cacheBounds,
  });
  // Bounds hold from the start, even if they were lowered; read in the background so that a large
  // file-backend cache never delays the first answer.
  cache.budget.load().catch((e) => log.warn("cannot read cache usage", { error: (e as Error).message }));
  const agents = new UpstreamAgents(upstreamCa, pairs);
  const metrics = new ProxyMetrics();
  const health = new UpstreamHealth({
    endpoints: config.upstreams,
    intervalMs: config.healthIntervalMs,
    failures: config.healthFailures,
    timeoutMs: Math.min(config.backendTimeoutMs, Math.max(config.healthIntervalMs, 500)),
    // Offline reboot: a black-holed cloud is known within this, not after the probe timeout.
    connectTimeoutMs: Math.min(config.backendTimeoutMs, START_CONNECT_TIMEOUT_MS),
    agent: () => agents.anonymous(),
  });
  const watches = new HeldWatches({
    bookmarkIntervalMs: Math.max(1000, config.healthIntervalMs),
    kindOf: (ctx) => listedKind(cache, ctx),
  });
  const inflight = new Set<InFlight>();
  let servingNow = serving;

  // In-cluster clients: kube-proxy is shown this node's lite-apiserver as the kubernetes Service.
  const inCluster = inClusterSupport(config, { pairs, caPem: upstreamCa });
  const kubernetesService = inCluster.rewrite;

  const router = createRouter({
    agents,
    health,
    cache,
    watches,
    metrics,
    inflight,
    config,
    kubernetesService,
  });

  health.onChange((online) => {
    metrics.transitions.inc({ state: online ? "online" : "offline" });
    if (online) {
      const held = watches.count;
      const resumed = watches.cloudBack(router.resumeWatch);
      if (held) log.info("held watches handed back to the cloud", { resumed, ended: held - resumed });
    } else abandonInFlight(inflight);
  });
  // Probing starts before the listener: after an offline reboot the first verdict comes sooner.
  health.start();

  let listener: Listener;
  try {
    listener = await startListener({
      addresses: config.addresses,
      port: config.port,
      serving,
      handlers: {
        request: router.request,
        upgrade: router.upgrade,
      },
      limits: {
        headerTimeoutMs: config.requestHeaderTimeoutMs,
        maxRequestBodyBytes: config.maxRequestBodyBytes,
        maxConnections: config.maxConnections,
      },
      errorBody: statusBody,
    });
  } catch (e) {
    health.close();
    agents.destroy();
    await store.close();
    throw e;
  }

  inCluster.listening(listener.port, serving.certPem);

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
    inCluster.servingChanged(m.certPem);
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
        showIdentities: config.adminIdentities === "show",
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
