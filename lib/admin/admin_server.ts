/**
 * The admin listener: plain HTTP on a loopback address by default, with `/healthz` (the process
 * answers), `/readyz` (serving, online or offline), `/metrics` (Prometheus text) and `/status`
 * (JSON for `lite-apiserver status`). It reads the proxy's components; it never changes them.
 */
import http from "node:http";
import type { Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { ConfigError } from "../config/errors.ts";
import { log } from "../log.ts";
import { VERSION } from "../version.ts";
import type { Store } from "../store/store.ts";
import type { EndpointState } from "../upstream/health.ts";
import type { PairStatus } from "../certs/client_watcher.ts";
import { type ProxyMetrics, runtimeRegistry } from "./metrics.ts";
import { buildStatus, failureStatus, type QueueStats, shownPairs, UsageCache } from "./status.ts";
import type { WriteFailure } from "../cache/write_queue.ts";

/** What the admin endpoints read. Structural, so tests and benchmarks can pass their own parts. */
export interface AdminDeps {
  address: string;
  /** 0 = a random free port. */
  port: number;
  health: { online: boolean; endpoints: EndpointState[]; changedAt: number; transitions: number };
  store: Pick<Store, "backend" | "entries">;
  queue: Omit<QueueStats, "failing" | "lastFailure"> & { failing?: WriteFailure; lastFailure?: WriteFailure };
  watches: { count: number };
  metrics: ProxyMetrics;
  pairs?: { status(): PairStatus[] };
  /** Why the proxy cannot serve, if it cannot (default: always ready while the admin server runs). */
  notReady?: () => string | undefined;
  /** How long a cache walk is reused (default 5 s). */
  usageTtlMs?: number;
  /** Name cached identities (CNs, impersonation ids) in /status and /metrics (default true). */
  showIdentities?: boolean;
}

export interface AdminServer {
  /** http://ADDR:PORT */
  url: string;
  port: number;
  close(): Promise<void>;
}

const PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Starts the admin listener. Throws ConfigError when the address or port cannot be bound. */
export async function startAdminServer(deps: AdminDeps): Promise<AdminServer> {
  const startedAtMs = performance.timeOrigin;
  const show = deps.showIdentities ?? true;
  const usage = new UsageCache(deps.store, deps.usageTtlMs ?? 5000, show);
  const queueStats = (): QueueStats => ({
    depth: deps.queue.depth,
    bytes: deps.queue.bytes,
    dropped: deps.queue.dropped,
    written: deps.queue.written,
    failed: deps.queue.failed,
    failing: failureStatus(deps.queue.failing),
    lastFailure: failureStatus(deps.queue.lastFailure),
  });
  const runtime = runtimeRegistry({
    online: () => deps.health.online,
    endpoints: () => deps.health.endpoints,
    backend: deps.store.backend,
    cacheUsage: () => usage.last,
    queue: queueStats,
    writeFailure: () => ({ failing: deps.queue.failing, last: deps.queue.lastFailure }),
    heldWatches: () => deps.watches.count,
    certs: () => shownPairs(deps.pairs?.status() ?? [], show),
    rss: () => Deno.memoryUsage().rss,
    version: VERSION,
    startedAtMs,
  });
  const notReady = () =>
    deps.notReady?.() ?? (usage.error ? `cache store unreadable: ${usage.error}` : undefined);

  const send = (res: http.ServerResponse, code: number, type: string, body: string) => {
    res.writeHead(code, {
      "content-type": type,
      "cache-control": "no-store",
      "content-length": Buffer.byteLength(body),
    });
    res.end(res.req.method === "HEAD" ? undefined : body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return send(res, 405, "text/plain", "method not allowed\n");
    }
    const path = (req.url ?? "/").split("?")[0];
    switch (path) {
      case "/healthz":
      case "/livez":
        return send(res, 200, "text/plain", "ok\n");
      case "/readyz": {
        const why = notReady();
        if (why) return send(res, 503, "text/plain", `not ready: ${why}\n`);
        return send(res, 200, "text/plain", `${deps.health.online ? "online" : "offline"}\n`);
      }
      case "/metrics":
        await usage.get();
        return send(res, 200, PROM_TYPE, deps.metrics.registry.render() + runtime.render());
      case "/status": {
        const report = await buildStatus({
          version: VERSION,
          startedAtMs,
          health: deps.health,
          usage,
          queue: queueStats(),
          heldWatches: deps.watches.count,
          pairs: deps.pairs,
          showIdentities: show,
        });
        return send(res, 200, "application/json", JSON.stringify(report, null, 2) + "\n");
      }
      default:
        return send(res, 404, "text/plain", "not found: try /healthz, /readyz, /metrics or /status\n");
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      log.warn(
        "admin request failed",
        { path: req.url, error: (err as Error).message },
        "admin.request-failed",
      );
      if (!res.headersSent) send(res, 500, "text/plain", `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    });
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      const where = `${deps.address}:${deps.port}`;
      if (err.code === "EADDRINUSE") {
        reject(new ConfigError(`--admin-port ${deps.port}: ${where} is already in use`));
      } else if (err.code === "EADDRNOTAVAIL") {
        reject(new ConfigError(`--admin-address ${deps.address}: not an address of this host`));
      } else reject(new ConfigError(`admin listener ${where}: ${err.message}`));
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(deps.port, deps.address);
  });
  const port = (server.address() as AddressInfo).port;
  const host = deps.address.includes(":") ? `[${deps.address}]` : deps.address;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
