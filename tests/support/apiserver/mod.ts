/**
 * A faithful simulated kube-apiserver for tests, the demo and benchmarks: TLS with client-cert and
 * token authentication, an RBAC-like authorizer, legacy discovery, CRUD with one global
 * resourceVersion, selectors, paging, server-side Tables, watches with bookmarks, a tiny
 * deployment controller, and a fault relay (blackhole / refuse) in front of it; with the `wire`
 * option, a wire relay behind that cuts answers the way real servers and networks do.
 */
import type { IncomingMessage } from "node:http";
import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { authenticate, type ConnCert, readConnCert } from "./auth.ts";
import { startDeploymentController } from "./controller.ts";
import { createHandler, type RequestRecord, requestRecord } from "./handler.ts";
import { type Eviction, NodeLifecycle } from "./node_lifecycle.ts";
import { type FaultMode, FaultRelay } from "./relay.ts";
import { findByKind } from "./resources.ts";
import { APISERVER_ADDRESSES, seed as seedStore } from "./seed.ts";
import { type ApiserverAddresses, startKubernetesEndpointsReconciler } from "./kubernetes_service.ts";
import { type Obj, ObjectStore } from "./store.ts";
import type { WireMode, WireModeName } from "./wire_modes.ts";
import { WireRelay } from "./wire_relay.ts";
import { frontCert, type H2Front, startH2Front } from "./h2_front.ts";
import { startCodecH2Front } from "./h2_server.ts";

export type { RequestRecord } from "./handler.ts";
export type { FaultMode } from "./relay.ts";
export { WIRE_MODES, type WireMode, type WireModeName } from "./wire_modes.ts";
export type { Eviction } from "./node_lifecycle.ts";

/** Options for {@link startFakeApiServer}. */
export interface FakeApiServerOptions {
  /** PEM file: the CA client certificates must chain to. */
  caCert: string;
  caKey?: string;
  /** PEM files: the serving pair. */
  certFile: string;
  keyFile: string;
  /** Public (relay) port; 0 = random (default). */
  port?: number;
  /** Bearer tokens it accepts. */
  tokens?: Record<string, { user: string; groups?: string[] }>;
  /** Default true: a small realistic cluster. */
  seed?: boolean;
  /** Interval of BOOKMARK events on watches with allowWatchBookmarks=true (default 1000 ms). */
  bookmarkIntervalMs?: number;
  /**
   * Serve through the wire relay (TLS terminated there, answers re-cut in this wire mode; see
   * wire_modes.ts) instead of straight from the TLS server. Switch modes later with `setWire`.
   */
  wire?: WireMode | WireModeName;
  /** How long one tolerationSecond lasts for the node lifecycle simulation (default 1000 ms). */
  tolerationSecondMs?: number;
  /**
   * Speak HTTP/2 as the real apiserver does (ALPN h2, then http/1.1), announcing `maxStreams`
   * concurrent streams per connection. `impl`: "codec" (default), a front built from the project's
   * own frame/HPACK codec that sends heads at once as Go does (h2_server.ts); "nginx", an
   * independent server (h2_front.ts; it holds an h2 response head until the first body byte).
   * Not with `wire`.
   */
  http2?: { maxStreams?: number; keepaliveRequests?: number; impl?: "codec" | "nginx" };
}

/** A running fake apiserver. */
export interface FakeApiServer {
  /** https://127.0.0.1:<port>, through the fault relay. */
  url: string;
  port: number;
  /** The TLS server itself, bypassing the relay (for benchmarks). */
  directUrl: string;
  /** Every request, in arrival order (status is 0 until the response head is sent). */
  requests: RequestRecord[];
  waitForRequest(pred: (r: RequestRecord) => boolean, timeoutMs?: number): Promise<RequestRecord>;
  create(obj: Record<string, unknown>): Record<string, unknown>;
  update(obj: Record<string, unknown>): Record<string, unknown>;
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): void;
  get(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ): Record<string, unknown> | undefined;
  /** TCP connections to the public port: accepted so far, and open now. */
  connections(): { accepted: number; open: number };
  /** With http2 impl "codec": announce a new stream limit, or send GOAWAY, on every h2 connection. */
  h2?: {
    setMaxStreams(n: number): void;
    goaway(): void;
    /** Client-certificate h2 connections go half-open (anonymous probes still answered). */
    silenceCertConnections(): void;
    readonly connections: number;
  };
  /** Forgets history: older resourceVersions now give 410 Gone on watch and continue. */
  compact(): void;
  setFault(mode: FaultMode): Promise<void>;
  /** Changes the wire mode of answers from now on (needs the `wire` option at start). */
  setWire(mode: WireMode | WireModeName): void;
  /**
   * The apiserver moved: the kubernetes Endpoints and EndpointSlice now list these addresses
   * (a seeded cluster only; the reconciler keeps them so, as a real apiserver does).
   */
  setKubernetesEndpoints(a: ApiserverAddresses): void;
  /** Answers requests whose path matches `pattern` only after `ms` (undefined: no delay). */
  setDelay(pattern: RegExp | undefined, ms?: number): void;
  /** Node lifecycle: the node stops reporting (Ready Unknown, unreachable NoExecute taint). */
  cutNode(name: string): void;
  /** Node lifecycle: the node reports again (taints gone, Ready True). */
  restoreNode(name: string): void;
  /** Pods the taint manager evicted (deleted), in order. */
  evictions: Eviction[];
  close(): Promise<void>;
}

function defOf(apiVersion: string, kind: string) {
  const def = findByKind(apiVersion, kind);
  if (!def) throw new Error(`fake apiserver: unknown kind ${apiVersion} ${kind}`);
  return def;
}

/** Starts the fake apiserver on 127.0.0.1. */
export async function startFakeApiServer(opts: FakeApiServerOptions): Promise<FakeApiServer> {
  const store = new ObjectStore();
  if (opts.seed ?? true) seedStore(store);
  const stopDeployments = startDeploymentController(store);
  const lifecycle = new NodeLifecycle(store, opts.tolerationSecondMs ?? 1000);
  const kubernetesEndpoints = (opts.seed ?? true)
    ? startKubernetesEndpointsReconciler(store, APISERVER_ADDRESSES)
    : undefined;
  const stopController = () => {
    stopDeployments();
    lifecycle.stop();
    kubernetesEndpoints?.stop();
  };
  const requests: RequestRecord[] = [];
  const waiters = new Set<(r: RequestRecord) => void>();
  const watches = new Set<() => void>();
  const conns = new WeakMap<object, ConnCert>();
  const sockets = new Set<Socket>();
  /** Client certificates of the wire relay's upstream connections, by their local port. */
  const relayConns = new Map<number, ConnCert>();
  /** Client certificates the HTTP/2 front verified, by request. */
  const frontCerts = new WeakMap<IncomingMessage, ConnCert>();
  let publicPort = 0;

  const notify = (r: RequestRecord) => {
    for (const w of [...waiters]) w(r);
  };
  let delay: { pattern: RegExp; ms: number } | undefined;
  const handler = createHandler({
    delayFor: (_method, path) => (delay && delay.pattern.test(path) ? delay.ms : 0),
    store,
    tokens: opts.tokens ?? {},
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000,
    serverAddress: () => `127.0.0.1:${publicPort}`,
    connCert: (req: IncomingMessage) => {
      const front = frontCerts.get(req);
      if (front) return front;
      const s = req.socket as TLSSocket;
      if (!s.encrypted) return relayConns.get(s.remotePort ?? 0) ?? { state: "none" };
      let c = conns.get(s);
      if (!c) conns.set(s, c = readConnCert(s));
      return c;
    },
    record: (r) => {
      requests.push(r);
      notify(r);
    },
    updated: notify,
    watches,
  });

  const server = https.createServer({
    ca: await Deno.readTextFile(opts.caCert),
    cert: await Deno.readTextFile(opts.certFile),
    key: await Deno.readTextFile(opts.keyFile),
    requestCert: true,
    rejectUnauthorized: false,
  }, handler);
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("secureConnection", (s: TLSSocket) => conns.set(s, readConnCert(s)));
  // exec / attach / portforward: a 101 upgrade, then the stream echoes every byte back, so a
  // proxy's tunnel can be checked byte for byte (no SPDY framing is simulated).
  const onUpgrade = (req: IncomingMessage, socket: Socket) => {
    const tls = socket as unknown as TLSSocket;
    let conn = frontCerts.get(req) ??
      (tls.encrypted ? conns.get(tls) : relayConns.get(socket.remotePort ?? 0) ?? { state: "none" });
    if (!conn) conns.set(tls, conn = readConnCert(tls));
    const id = authenticate(conn, req.headers, opts.tokens ?? {});
    const url = new URL(req.url ?? "/", "https://x");
    const allowed = id.authn !== "anonymous" && id.authn !== "invalid" &&
      /\/(exec|attach|portforward)$/.test(url.pathname);
    const status = allowed ? 101 : id.authn === "invalid" ? 401 : 403;
    const rec = requestRecord(req, url, id, status);
    requests.push(rec);
    notify(rec);
    if (!allowed) {
      const body = JSON.stringify({
        kind: "Status",
        apiVersion: "v1",
        status: "Failure",
        code: status,
        reason: status === 401 ? "Unauthorized" : "Forbidden",
        message: "upgrade refused",
      });
      // Chunked, as the kube-apiserver refuses an upgrade (kubectl exec into a forbidden pod).
      socket.end(
        `HTTP/1.1 ${status} ${
          status === 401 ? "Unauthorized" : "Forbidden"
        }\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
          `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n` +
        `X-Stream-Protocol-Version: ${
          String(req.headers["x-stream-protocol-version"] ?? "").split(",")[0].trim()
        }\r\n\r\n`,
    );
    socket.pipe(socket);
  };
  server.on("upgrade", onUpgrade);
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const directPort = (server.address() as AddressInfo).port;
  // With a wire mode: fault relay → wire relay (TLS, re-cut answers) → internal plain HTTP listener.
  let wire: { relay: WireRelay; plain: http.Server } | undefined;
  if (opts.wire !== undefined) {
    const plain = http.createServer(handler);
    plain.on("upgrade", onUpgrade);
    plain.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", () => resolve()));
    const wireRelay = new WireRelay({
      ca: await Deno.readTextFile(opts.caCert),
      cert: await Deno.readTextFile(opts.certFile),
      key: await Deno.readTextFile(opts.keyFile),
      targetPort: (plain.address() as AddressInfo).port,
      register: (port, conn) => relayConns.set(port, conn),
      unregister: (port) => relayConns.delete(port),
      mode: opts.wire,
    });
    await wireRelay.start();
    wire = { relay: wireRelay, plain };
  }
  // With http2: fault relay → nginx (TLS, h2) → internal plain HTTP listener.
  let h2: { front: H2Front; plain: http.Server } | undefined;
  let codecFront: Awaited<ReturnType<typeof startCodecH2Front>> | undefined;
  if (opts.http2 && !wire && (opts.http2.impl ?? "codec") === "codec") {
    const plain = http.createServer(handler);
    plain.keepAliveTimeout = 3_600_000;
    plain.on("upgrade", onUpgrade);
    plain.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", () => resolve()));
    codecFront = await startCodecH2Front({
      backendPort: (plain.address() as AddressInfo).port,
      ca: await Deno.readTextFile(opts.caCert),
      cert: await Deno.readTextFile(opts.certFile),
      key: await Deno.readTextFile(opts.keyFile),
      maxStreams: opts.http2.maxStreams,
      register: (port, conn) => relayConns.set(port, conn),
      unregister: (port) => relayConns.delete(port),
    });
    h2 = { front: codecFront, plain };
  } else if (opts.http2 && !wire) {
    const withCert = (req: IncomingMessage) => {
      const c = frontCert(req);
      if (c) frontCerts.set(req, c);
    };
    const plain = http.createServer((req, res) => {
      withCert(req);
      handler(req, res);
    });
    plain.keepAliveTimeout = 3_600_000;
    plain.on("upgrade", (req: IncomingMessage, socket: Socket) => {
      withCert(req);
      onUpgrade(req, socket);
    });
    plain.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", () => resolve()));
    const front = await startH2Front({
      backendPort: (plain.address() as AddressInfo).port,
      caCert: opts.caCert,
      certFile: opts.certFile,
      keyFile: opts.keyFile,
      maxStreams: opts.http2.maxStreams,
      keepaliveRequests: opts.http2.keepaliveRequests,
    });
    h2 = { front, plain };
  }
  const relay = new FaultRelay(wire ? wire.relay.port : h2 ? h2.front.port : directPort);
  try {
    await relay.start(opts.port ?? 0);
  } catch (e) {
    stopController();
    await wire?.relay.close();
    await new Promise((r) => server.close(r));
    throw e;
  }
  const port = relay.port;
  publicPort = port;

  return {
    url: `https://127.0.0.1:${port}`,
    port,
    directUrl: `https://127.0.0.1:${directPort}`,
    requests,
    waitForRequest(pred, timeoutMs = 10_000) {
      const found = requests.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`fake apiserver: no matching request within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = (r: RequestRecord) => {
          if (!pred(r)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(r);
        };
        waiters.add(check);
      });
    },
    create: (obj) => store.create(defOf(String(obj.apiVersion), String(obj.kind)), obj as Obj),
    update: (obj) => store.update(defOf(String(obj.apiVersion), String(obj.kind)), obj as Obj),
    remove: (apiVersion, kind, namespace, name) =>
      void store.delete(defOf(apiVersion, kind), namespace, name),
    get: (apiVersion, kind, namespace, name) => store.get(defOf(apiVersion, kind), namespace, name),
    compact: () => store.compact(),
    setFault: (mode) => relay.setMode(mode),
    connections: () => ({ accepted: relay.accepted, open: relay.open }),
    h2: codecFront && {
      setMaxStreams: (n: number) => codecFront!.setMaxStreams(n),
      goaway: () => codecFront!.goaway(),
      silenceCertConnections: () => codecFront!.silenceCertConnections(),
      get connections() {
        return codecFront!.h2Connections;
      },
    },
    setWire: (mode) => {
      if (!wire) throw new Error("fake apiserver: started without the `wire` option");
      wire.relay.setMode(mode);
    },
    setKubernetesEndpoints: (a) => {
      if (!kubernetesEndpoints) throw new Error("fake apiserver: not seeded, no kubernetes Service");
      kubernetesEndpoints.setAddresses(a);
    },
    setDelay: (pattern, ms = 0) => {
      delay = pattern ? { pattern, ms } : undefined;
    },
    cutNode: (name) => lifecycle.cut(name),
    restoreNode: (name) => lifecycle.restore(name),
    evictions: lifecycle.evictions,
    async close() {
      stopController();
      for (const cancel of [...watches]) cancel();
      await relay.close();
      await wire?.relay.close();
      await h2?.front.close();
      const closed = [server, ...(wire ? [wire.plain] : []), ...(h2 ? [h2.plain] : [])].map((srv) =>
        new Promise<void>((r) => srv.close(() => r()))
      );
      for (const s of sockets) s.destroy();
      await Promise.all(closed);
    },
  };
}
