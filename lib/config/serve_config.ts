/**
 * The `serve` command's configuration: flags, an optional YAML/JSON config file (same keys),
 * defaults, and validation. Flags override the file. Every problem is a one-line ConfigError.
 */
import YAML from "yaml";
import { ConfigError } from "./errors.ts";
import { defaultOf, type Flag, helpText, parseFlags } from "./flags.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../log.ts";
import { type KubernetesServiceConfig, resolveKubernetesService } from "./kubernetes_service_config.ts";
import { isListenAddress, isLoopback } from "./addresses.ts";
import { type CacheBounds, DEFAULT_BOUNDS } from "./cache_bounds.ts";

export interface ServeConfig {
  /** Upstream endpoints in priority order, as absolute https URLs without a trailing slash. */
  upstreams: string[];
  caFile: string;
  apiserverCaFile: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  addresses: string[];
  port: number;
  tlsConfigFile?: string;
  cacheBackend: "sqlite" | "file";
  cacheDir: string;
  backendTimeoutMs: number;
  /** A write with no answer by then gets a 504 (the apiserver's own default request timeout). */
  writeTimeoutMs: number;
  healthIntervalMs: number;
  healthFailures: number;
  evictAfterMs: number;
  writeQueueBytes: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  adminAddress: string;
  /** 0 disables the admin listener. */
  adminPort: number;
  /** In-cluster clients: kube-proxy's view of the `kubernetes` Service, the SAN check. */
  kubernetesService: KubernetesServiceConfig;
  // --- security (issue 10): cache bounds, watch-event bound, admin exposure ---
  /** Cache bounds per identity and overall; an identity over them loses its own LRU entries. */
  cacheBounds: CacheBounds;
  /** A watch event larger than this is relayed but ends the caching of that watch. */
  watchEventMaxBytes: number;
  /** Whether /status and /metrics name cached identities (CNs, impersonation ids). */
  adminIdentities: "show" | "hide";
  // HTTP layer (lib/http): request-header timeout, request-body and connection caps.
  requestHeaderTimeoutMs: number;
  maxRequestBodyBytes: number;
  maxConnections: number;
  // Slow readers of answers (issue 18): bytes read from the cloud but not yet written to the client.
  /** A watch whose client lags more than this is ended after its last whole event. */
  watchBufferBytes: number;
  /** Any other answer whose client lags more than this is cut (the connection is closed). */
  answerBufferBytes: number;
  /** A client that takes nothing of its answer for this long is treated as past its bound. */
  slowReaderTimeoutMs: number;
  // Listener bounds (issue 18): handshake, seats kept for verified clients, pipelining, bodies.
  tlsHandshakeTimeoutMs: number;
  maxAnonymousConnections: number;
  maxPipelinedRequests: number;
  requestBodyTimeoutMs: number;
  requestBodyIdleTimeoutMs: number;
  requestBodyBufferBytes: number;
  /** Notices about accepted-but-mapped legacy flags, logged at start-up. */
  notices: string[];
  /** Offer h2 by ALPN on the listener (issue 21 part 2). */
  http2: "on" | "off";
  // HTTP/2 to the cloud (issue 21): one multiplexed connection per identity when ALPN picks h2.
  upstreamHttp2: "auto" | "off";
  /** An HTTP/2 connection silent this long gets a PING (client-go: 30 s). */
  upstreamHttp2ReadIdleMs: number;
  /** A PING unanswered this long: the connection is dead and its watches are cut (client-go: 15 s). */
  upstreamHttp2PingTimeoutMs: number;
}

/**
 * `serve`'s flags: parsing, `--help` and defaults all come from this table. The config file takes
 * the same keys (kebab-case or camelCase), all but `config` itself.
 */
export const SERVE_FLAGS: readonly Flag[] = [
  {
    name: "config",
    arg: "FILE",
    help: "YAML or JSON file with the same keys as these flags (flags override it)",
  },
  {
    name: "kube-apiserver-url",
    arg: "URL",
    help: "upstream kube-apiserver (required); repeatable or comma-separated, in priority order",
    repeatable: true,
  },
  {
    name: "kube-apiserver-port",
    arg: "PORT",
    help: "port for --kube-apiserver-url values given as a bare host",
    default: "443",
  },
  {
    name: "ca-file",
    arg: "FILE",
    help: "cluster CA bundle: verifies the upstream and local client certificates",
  },
  { name: "apiserver-ca-file", arg: "FILE", help: "CA bundle for the upstream only (default: --ca-file)" },
  { name: "tls-cert-file", arg: "FILE", help: "serving certificate of the local listener" },
  { name: "tls-private-key-file", arg: "FILE", help: "serving private key of the local listener" },
  { name: "address", arg: "IP", help: "listen address; repeatable", default: "127.0.0.1", repeatable: true },
  { name: "port", arg: "PORT", help: "listen port", default: "51003" },
  {
    name: "tls-config-file",
    arg: "FILE",
    help: 'client identities to present upstream: [{"cert": PATH, "key": PATH}]',
  },
  { name: "cache-backend", arg: "BACKEND", help: "sqlite or file", default: "sqlite" },
  { name: "cache-dir", arg: "DIR", help: "cache directory", default: "/var/lib/lite-apiserver" },
  {
    name: "backend-timeout",
    arg: "DURATION",
    help: "upstream time to respond before reads are served from cache",
    default: "3s",
  },
  {
    name: "write-timeout",
    arg: "DURATION",
    help: "a write with no upstream answer by then gets a 504",
    default: "60s",
  },
  { name: "health-check-interval", arg: "DURATION", help: "upstream probe interval", default: "2s" },
  {
    name: "health-check-failures",
    arg: "N",
    help: "failed probes in a row before going offline",
    default: "2",
  },
  {
    name: "cache-evict-after",
    arg: "DURATION",
    help: "remove entries not refreshed for this long, online only",
    default: "7d",
  },
  {
    name: "write-queue-bytes",
    arg: "N",
    help: "bound of the asynchronous cache write queue",
    default: String(64 << 20),
  },
  { name: "log-level", arg: "LEVEL", help: "debug, info, warn or error", default: "info" },
  { name: "log-format", arg: "FORMAT", help: "text or json", default: "text" },
  { name: "admin-address", arg: "IP", help: "admin listener address", default: "127.0.0.1" },
  {
    name: "admin-port",
    arg: "PORT",
    help: "admin listener port for /healthz, /readyz, /metrics, /status; 0 disables",
    default: "51004",
  },
  // HTTP layer (lib/http): request-header timeout, request-body and connection caps.
  {
    name: "request-header-timeout",
    arg: "DURATION",
    help: "a request's head must arrive whole within this time of its first byte",
    default: "60s",
  },
  {
    name: "max-request-body-bytes",
    arg: "N",
    help: "larger request bodies are refused with 413, as the apiserver does",
    default: String(3 * 1024 * 1024),
  },
  {
    name: "max-connections",
    arg: "N",
    help: "open client connections (counted from accept) beyond this are refused",
    default: "2048",
  },
  // Slow readers of answers (issue 18).
  {
    name: "watch-buffer-bytes",
    arg: "N",
    help: "a watch whose client lags this many bytes behind the cloud is ended (the client re-watches)",
    default: String(4 << 20),
  },
  {
    name: "answer-buffer-bytes",
    arg: "N",
    help: "any other answer whose client lags this many bytes behind the cloud is cut",
    default: String(8 << 20),
  },
  {
    name: "slow-reader-timeout",
    arg: "DURATION",
    help: "a client that takes none of its answer for this long has its watch ended or its answer cut",
    default: "30s",
  },
  // Listener bounds (issue 18): handshake, seats kept for verified clients, pipelining, bodies.
  {
    name: "tls-handshake-timeout",
    arg: "DURATION",
    help: "a client's TLS handshake must finish within this time of connecting",
    default: "10s",
  },
  {
    name: "max-anonymous-connections",
    arg: "N",
    help: "connections without a verified client certificate or proven token (and pending handshakes); the " +
      "rest of --max-connections is kept for verified clients, the oldest anonymous connection gives way " +
      "(default: 3/4 of --max-connections)",
  },
  {
    name: "max-pipelined-requests",
    arg: "N",
    help: "requests in a row sent before the previous answer went out; one more closes the connection",
    default: "32",
  },
  {
    name: "request-body-timeout",
    arg: "DURATION",
    help: "a request body must arrive whole within this time of its head, else 408; 0 disables",
    default: "60s",
  },
  {
    name: "request-body-idle-timeout",
    arg: "DURATION",
    help: "longest pause between request-body bytes, else 408; 0 disables",
    default: "30s",
  },
  {
    name: "request-body-buffer-bytes",
    arg: "N",
    help: "request-body bytes held in memory by all requests together; beyond, a request gets 503",
    default: String(32 * 1024 * 1024),
  },
  // In-cluster clients (README "In-cluster clients"); their defaults depend on --address, see
  // lib/config/kubernetes_service_config.ts.
  {
    name: "kubernetes-service-rewrite",
    arg: "MODE",
    help:
      "show kube-proxy this node's lite-apiserver as the kubernetes Service's endpoint: auto, on or off " +
      "(default auto: on when a non-loopback --address or --kubernetes-service-endpoint is given)",
  },
  {
    name: "kubernetes-service-endpoint",
    arg: "IP[:PORT]",
    help:
      "the node address (and port, default --port) kube-proxy is given (default: the first non-loopback --address)",
  },
  {
    name: "kube-proxy-identity",
    arg: "NAME",
    help:
      "user name (client certificate CN) of the node's kube-proxy; repeatable (default system:kube-proxy)",
    repeatable: true,
  },
  {
    name: "kubernetes-service-ip",
    arg: "IP",
    help:
      "the kubernetes Service's ClusterIP for the serving-certificate check (default: read from the cluster)",
  },
  { name: "cluster-domain", arg: "DOMAIN", help: "the cluster's DNS domain (default cluster.local)" },
  // Cache bounds, watch-event bound, admin exposure (security, issue 10).
  {
    name: "cache-max-bytes",
    arg: "N",
    help: "bound of the whole cache in bytes",
    default: String(DEFAULT_BOUNDS.total.bytes),
  },
  {
    name: "cache-max-entries",
    arg: "N",
    help: "bound of the whole cache in entries",
    default: String(DEFAULT_BOUNDS.total.entries),
  },
  {
    name: "cache-max-bytes-per-identity",
    arg: "N",
    help: "bound of one identity's cache in bytes; its least recently used entries go first",
    default: String(DEFAULT_BOUNDS.perIdentity.bytes),
  },
  {
    name: "cache-max-entries-per-identity",
    arg: "N",
    help: "bound of one identity's cache in entries",
    default: String(DEFAULT_BOUNDS.perIdentity.entries),
  },
  {
    name: "watch-event-max-bytes",
    arg: "N",
    help: "a larger watch event is relayed but ends the caching of that watch",
    default: String(8 << 20),
  },
  {
    name: "admin-identities",
    arg: "show|hide",
    help: "name cached identities in /status and /metrics (default show on loopback; required elsewhere)",
  },
  // HTTP/2 for the node's clients (issue 21 part 2).
  {
    name: "http2",
    arg: "on|off",
    help:
      "on: offer h2 by ALPN on the listener (one connection per client, requests as streams); off: HTTP/1.1 only",
    default: "on",
  },
  // HTTP/2 to the cloud (issue 21).
  {
    name: "upstream-http2",
    arg: "auto|off",
    help:
      "auto: offer h2 by ALPN and carry each identity's requests as streams on one connection; off: HTTP/1.1",
    default: "auto",
  },
  {
    name: "upstream-http2-read-idle",
    arg: "DURATION",
    help: "send an HTTP/2 PING on an upstream connection silent this long",
    default: "30s",
  },
  {
    name: "upstream-http2-ping-timeout",
    arg: "DURATION",
    help: "an upstream HTTP/2 PING unanswered this long closes the connection (its watches are cut)",
    default: "15s",
  },
  // SuperEdge lite-apiserver's names, accepted so existing unit files keep working.
  { name: "timeout", arg: "DURATION", help: "alias of --backend-timeout (SuperEdge)", hidden: true },
  { name: "cache-type", arg: "TYPE", help: "alias of --cache-backend (SuperEdge)", hidden: true },
  { name: "file-cache-path", arg: "DIR", help: "alias of --cache-dir (SuperEdge)", hidden: true },
];

const SERVE_USAGE = `Usage: lite-apiserver serve [flags]

Run the proxy: forward with each client's own identity, cache reads, serve them offline.`;

/** `serve --help`. */
export function serveHelp(): string {
  return helpText(SERVE_USAGE, SERVE_FLAGS);
}

/** Keys accepted in the config file: every flag but --config. */
const KEYS = SERVE_FLAGS.map((f) => f.name).filter((k) => k !== "config");
type Key = string;
type Raw = Partial<Record<Key, string | string[]>>;

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function readConfigFile(path: string): Raw {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new ConfigError(`--config ${path}: cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`--config ${path}: not valid YAML or JSON: ${(e as Error).message.split("\n")[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`--config ${path}: expected a mapping of flag names to values`);
  }
  const byName = new Map<string, Key>();
  for (const k of KEYS) {
    byName.set(k, k);
    byName.set(camel(k), k);
  }
  const raw: Raw = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const key = byName.get(k);
    if (!key) throw new ConfigError(`--config ${path}: unknown key "${k}"`);
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) raw[key] = v.map(String);
    else if (typeof v === "object") {
      throw new ConfigError(`--config ${path}: "${k}" must be a scalar or a list`);
    } else raw[key] = String(v);
  }
  return raw;
}

/** The value given (flag or file), without the default. */
function one(raw: Raw, key: Key): string | undefined {
  const v = raw[key];
  if (Array.isArray(v)) return v[v.length - 1];
  return v;
}

/** The value given, else the table's default. */
function value(raw: Raw, key: Key): string | undefined {
  return one(raw, key) ?? defaultOf(SERVE_FLAGS, key);
}

/** Every value given (comma-separated ones split), else the table's default. */
function many(raw: Raw, key: Key): string[] {
  const v = raw[key] ?? defaultOf(SERVE_FLAGS, key);
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
}

function int(value: string | undefined, what: string, min: number, max: number): number {
  if (value === undefined) throw new ConfigError(`${what} is required`);
  if (!/^\d+$/.test(value.trim())) throw new ConfigError(`${what}: "${value}" is not a whole number`);
  const n = parseInt(value, 10);
  if (n < min || n > max) throw new ConfigError(`${what}: ${n} is out of range (${min} to ${max})`);
  return n;
}

function readableFile(path: string | undefined, flag: string, required: boolean): string | undefined {
  if (path === undefined || path === "") {
    if (required) throw new ConfigError(`${flag} is required`);
    return undefined;
  }
  try {
    const st = Deno.statSync(path);
    if (!st.isFile) throw new ConfigError(`${flag} ${path}: not a regular file`);
    Deno.openSync(path, { read: true }).close();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (e instanceof Deno.errors.NotFound) throw new ConfigError(`${flag} ${path}: no such file`);
    throw new ConfigError(`${flag} ${path}: cannot read: ${(e as Error).message}`);
  }
  return path;
}

/** Normalises one --kube-apiserver-url value: a bare host gets https:// and the default port. */
export function normaliseUpstream(value: string, defaultPort: number): string {
  let v = value.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
    v = `https://${v.includes(":") && !v.startsWith("[") ? v : `${v}:${defaultPort}`}`;
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(`--kube-apiserver-url: "${value}" is not a valid URL`);
  }
  if (u.protocol !== "https:") {
    throw new ConfigError(
      `--kube-apiserver-url: "${value}" must use https (the upstream is a kube-apiserver)`,
    );
  }
  if (!u.hostname) throw new ConfigError(`--kube-apiserver-url: "${value}" has no host`);
  if (u.search || u.hash || u.username) {
    throw new ConfigError(`--kube-apiserver-url: "${value}" must not carry a query, fragment or credentials`);
  }
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

/** Parses `serve` arguments (without the subcommand). Returns null when --help was printed. */
export function parseServeArgs(argv: string[]): ServeConfig | null {
  const parsed = parseFlags("serve", SERVE_FLAGS, argv);
  if (parsed.help) {
    console.log(serveHelp());
    return null;
  }
  const config = parsed.given.get("config")?.at(-1);
  const raw: Raw = config ? readConfigFile(config) : {};
  for (const [k, v] of parsed.given) if (k !== "config") raw[k] = v;
  return resolveConfig(raw);
}

function resolveConfig(raw: Raw): ServeConfig {
  const notices: string[] = [];
  const port = int(value(raw, "kube-apiserver-port"), "--kube-apiserver-port", 1, 65535);
  const urls = many(raw, "kube-apiserver-url");
  if (urls.length === 0) throw new ConfigError("--kube-apiserver-url is required (the cloud kube-apiserver)");
  const upstreams = [...new Set(urls.map((u) => normaliseUpstream(u, port)))];

  const caFile = readableFile(one(raw, "ca-file"), "--ca-file", true)!;
  const apiserverCaFile = readableFile(one(raw, "apiserver-ca-file"), "--apiserver-ca-file", false) ?? caFile;
  const tlsCertFile = readableFile(one(raw, "tls-cert-file"), "--tls-cert-file", true)!;
  const tlsKeyFile = readableFile(one(raw, "tls-private-key-file"), "--tls-private-key-file", true)!;
  const tlsConfigFile = readableFile(one(raw, "tls-config-file"), "--tls-config-file", false);

  const addresses = many(raw, "address");
  for (const a of addresses) {
    if (!isListenAddress(a)) throw new ConfigError(`--address: "${a}" is not an IP address`);
  }

  let backend = one(raw, "cache-backend");
  const cacheType = one(raw, "cache-type");
  if (backend === undefined && cacheType !== undefined) {
    if (cacheType === "file") backend = "file";
    else if (["badger", "bolt", "pebble"].includes(cacheType)) {
      backend = "sqlite";
      notices.push(
        `--cache-type ${cacheType} (SuperEdge) maps to --cache-backend sqlite, the embedded database here`,
      );
    } else if (cacheType === "memory") {
      throw new ConfigError(
        "--cache-type memory is not supported: a memory cache is lost on reboot; use --cache-backend sqlite or file",
      );
    } else backend = cacheType;
  }
  backend ??= defaultOf(SERVE_FLAGS, "cache-backend")!;
  if (backend !== "sqlite" && backend !== "file") {
    throw new ConfigError(`--cache-backend: "${backend}" is not a backend (use sqlite or file)`);
  }
  const cacheDir = one(raw, "cache-dir") ?? one(raw, "file-cache-path") ??
    defaultOf(SERVE_FLAGS, "cache-dir")!;

  const timeout = one(raw, "backend-timeout") ?? one(raw, "timeout") ??
    defaultOf(SERVE_FLAGS, "backend-timeout")!;
  const backendTimeoutMs = parseDuration(timeout, "--backend-timeout");
  if (backendTimeoutMs < 100) {
    throw new ConfigError(`--backend-timeout: ${timeout} is too short (at least 100ms)`);
  }
  const writeTimeoutMs = parseDuration(value(raw, "write-timeout")!, "--write-timeout");
  if (writeTimeoutMs < 1000) throw new ConfigError("--write-timeout: at least 1s");
  const healthIntervalMs = parseDuration(value(raw, "health-check-interval")!, "--health-check-interval");
  if (healthIntervalMs < 100) throw new ConfigError("--health-check-interval: at least 100ms");
  const evictAfterMs = parseDuration(value(raw, "cache-evict-after")!, "--cache-evict-after");
  if (evictAfterMs < 60_000) throw new ConfigError("--cache-evict-after: at least 1m");

  const logLevel = value(raw, "log-level") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level: "${logLevel}" is not a level (use ${LOG_LEVELS.join(", ")})`);
  }
  const logFormat = value(raw, "log-format") as LogFormat;
  if (logFormat !== "text" && logFormat !== "json") {
    throw new ConfigError(`--log-format: "${logFormat}" is not a format (use text or json)`);
  }
  const adminAddress = value(raw, "admin-address")!;
  if (!isListenAddress(adminAddress)) {
    throw new ConfigError(`--admin-address: "${adminAddress}" is not an IP address`);
  }

  const kubernetesService = resolveKubernetesService({
    mode: one(raw, "kubernetes-service-rewrite"),
    endpoint: one(raw, "kubernetes-service-endpoint"),
    proxyIdentities: many(raw, "kube-proxy-identity"),
    clusterIp: one(raw, "kubernetes-service-ip"),
    clusterDomain: one(raw, "cluster-domain"),
  }, addresses);
  const adminIdentities = one(raw, "admin-identities");
  if (adminIdentities !== undefined && adminIdentities !== "show" && adminIdentities !== "hide") {
    throw new ConfigError(`--admin-identities: "${adminIdentities}" is not show or hide`);
  }
  if (adminIdentities === undefined && !isLoopback(adminAddress)) {
    throw new ConfigError(
      `--admin-address ${adminAddress} is not a loopback address: /status and /metrics would tell the network ` +
        "which identities are cached; choose knowingly with --admin-identities hide or show",
    );
  }
  const cacheBounds: CacheBounds = {
    perIdentity: {
      bytes: int(
        value(raw, "cache-max-bytes-per-identity"),
        "--cache-max-bytes-per-identity",
        1 << 16,
        2 ** 50,
      ),
      entries: int(value(raw, "cache-max-entries-per-identity"), "--cache-max-entries-per-identity", 1, 1e9),
    },
    total: {
      bytes: int(value(raw, "cache-max-bytes"), "--cache-max-bytes", 1 << 16, 2 ** 50),
      entries: int(value(raw, "cache-max-entries"), "--cache-max-entries", 1, 1e9),
    },
  };
  const requestHeaderTimeoutMs = parseDuration(
    value(raw, "request-header-timeout")!,
    "--request-header-timeout",
  );
  if (requestHeaderTimeoutMs < 100) throw new ConfigError("--request-header-timeout: at least 100ms");
  const slowReaderTimeoutMs = parseDuration(value(raw, "slow-reader-timeout")!, "--slow-reader-timeout");
  if (slowReaderTimeoutMs < 100) throw new ConfigError("--slow-reader-timeout: at least 100ms");
  const listenerBounds = parseListenerBounds(raw);
  const http2 = value(raw, "http2");
  if (http2 !== "on" && http2 !== "off") throw new ConfigError(`--http2: "${http2}" is not on or off`);
  const upstreamHttp2 = value(raw, "upstream-http2");
  if (upstreamHttp2 !== "auto" && upstreamHttp2 !== "off") {
    throw new ConfigError(`--upstream-http2: "${upstreamHttp2}" is not auto or off`);
  }
  const upstreamHttp2ReadIdleMs = parseDuration(
    value(raw, "upstream-http2-read-idle")!,
    "--upstream-http2-read-idle",
  );
  const upstreamHttp2PingTimeoutMs = parseDuration(
    value(raw, "upstream-http2-ping-timeout")!,
    "--upstream-http2-ping-timeout",
  );
  if (upstreamHttp2ReadIdleMs < 100 || upstreamHttp2PingTimeoutMs < 100) {
    throw new ConfigError("--upstream-http2-read-idle and --upstream-http2-ping-timeout: at least 100ms");
  }

  return {
    cacheBounds,
    watchEventMaxBytes: int(value(raw, "watch-event-max-bytes"), "--watch-event-max-bytes", 1024, 2 ** 31),
    adminIdentities: (adminIdentities ?? "show") as "show" | "hide",
    upstreams,
    kubernetesService,
    caFile,
    apiserverCaFile,
    tlsCertFile,
    tlsKeyFile,
    addresses,
    port: int(value(raw, "port"), "--port", 0, 65535),
    tlsConfigFile,
    cacheBackend: backend,
    cacheDir,
    backendTimeoutMs,
    writeTimeoutMs,
    healthIntervalMs,
    healthFailures: int(value(raw, "health-check-failures"), "--health-check-failures", 1, 100),
    evictAfterMs,
    writeQueueBytes: int(value(raw, "write-queue-bytes"), "--write-queue-bytes", 1 << 20, 2 ** 40),
    logLevel,
    logFormat,
    adminAddress,
    adminPort: int(value(raw, "admin-port"), "--admin-port", 0, 65535),
    requestHeaderTimeoutMs,
    maxRequestBodyBytes: int(value(raw, "max-request-body-bytes"), "--max-request-body-bytes", 1024, 2 ** 40),
    watchBufferBytes: int(value(raw, "watch-buffer-bytes"), "--watch-buffer-bytes", 1 << 16, 2 ** 40),
    answerBufferBytes: int(value(raw, "answer-buffer-bytes"), "--answer-buffer-bytes", 1 << 16, 2 ** 40),
    slowReaderTimeoutMs,
    maxConnections: listenerBounds.maxConnections,
    ...listenerBounds.rest,
    notices,
    http2,
    upstreamHttp2,
    upstreamHttp2ReadIdleMs,
    upstreamHttp2PingTimeoutMs,
  };
}

/** The listener's bounds (issue 18), checked against each other. */
function parseListenerBounds(raw: Raw) {
  const maxConnections = int(value(raw, "max-connections"), "--max-connections", 1, 1_000_000);
  const anonymous = value(raw, "max-anonymous-connections");
  const maxAnonymousConnections = anonymous === undefined
    ? Math.max(1, Math.floor(maxConnections * 3 / 4))
    : int(anonymous, "--max-anonymous-connections", 1, maxConnections);
  const timeout = (key: Key, flag: string, min: number) => {
    const ms = parseDuration(value(raw, key)!, flag);
    if (ms !== 0 && ms < min) throw new ConfigError(`${flag}: at least ${min}ms (or 0 to disable)`);
    return ms;
  };
  const tlsHandshakeTimeoutMs = parseDuration(
    value(raw, "tls-handshake-timeout")!,
    "--tls-handshake-timeout",
  );
  if (tlsHandshakeTimeoutMs < 100) throw new ConfigError("--tls-handshake-timeout: at least 100ms");
  return {
    maxConnections,
    rest: {
      tlsHandshakeTimeoutMs,
      maxAnonymousConnections,
      maxPipelinedRequests: int(value(raw, "max-pipelined-requests"), "--max-pipelined-requests", 1, 10_000),
      requestBodyTimeoutMs: timeout("request-body-timeout", "--request-body-timeout", 100),
      requestBodyIdleTimeoutMs: timeout("request-body-idle-timeout", "--request-body-idle-timeout", 100),
      requestBodyBufferBytes: int(
        value(raw, "request-body-buffer-bytes"),
        "--request-body-buffer-bytes",
        1 << 16,
        2 ** 40,
      ),
    },
  };
}

/** A one-line summary for the start-up log. */
export function describeConfig(c: ServeConfig): string {
  return `upstreams=${c.upstreams.join(",")} listen=${c.addresses.map((a) => `${a}:${c.port}`).join(",")} ` +
    `cache=${c.cacheBackend}:${c.cacheDir} backend-timeout=${formatDuration(c.backendTimeoutMs)}`;
}
