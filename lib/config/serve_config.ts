/**
 * The `serve` command's configuration: flags, an optional YAML/JSON config file (same keys),
 * defaults, and validation. Flags override the file. Every problem is a one-line ConfigError.
 */
import { Command, CommanderError, Option } from "commander";
import YAML from "yaml";
import { ConfigError } from "./errors.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../log.ts";
import { type KubernetesServiceConfig, resolveKubernetesService } from "./kubernetes_service_config.ts";
import { isLoopback } from "./addresses.ts";
import { type CacheBounds, DEFAULT_BOUNDS } from "../cache/cache_budget.ts";

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
  /** Notices about accepted-but-mapped legacy flags, logged at start-up. */
  notices: string[];
}

/** Keys accepted in the config file: the long flag names (kebab-case) or their camelCase forms. */
const KEYS = [
  "kube-apiserver-url",
  "kube-apiserver-port",
  "ca-file",
  "apiserver-ca-file",
  "tls-cert-file",
  "tls-private-key-file",
  "address",
  "port",
  "tls-config-file",
  "cache-backend",
  "cache-type",
  "cache-dir",
  "file-cache-path",
  "backend-timeout",
  "timeout",
  "write-timeout",
  "health-check-interval",
  "health-check-failures",
  "cache-evict-after",
  "write-queue-bytes",
  "log-level",
  "log-format",
  "admin-address",
  "admin-port",
  // In-cluster clients (lib/config/kubernetes_service_config.ts).
  "kubernetes-service-rewrite",
  "kubernetes-service-endpoint",
  "kube-proxy-identity",
  "kubernetes-service-ip",
  "cluster-domain",
  "cache-max-bytes",
  "cache-max-entries",
  "cache-max-bytes-per-identity",
  "cache-max-entries-per-identity",
  "watch-event-max-bytes",
  "admin-identities",
  "request-header-timeout",
  "max-request-body-bytes",
  "max-connections",
] as const;
type Key = typeof KEYS[number];
type Raw = Partial<Record<Key, string | string[]>>;

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function serveCommandSpec(): Command {
  const c = new Command("lite-apiserver serve")
    .description("Run the proxy: forward with each client's own identity, cache reads, serve them offline.")
    .helpOption("-h, --help", "show this help")
    .option("--config <file>", "YAML or JSON file with the same keys as these flags (flags override it)")
    .option(
      "--kube-apiserver-url <url>",
      "upstream kube-apiserver; repeatable or comma-separated, in priority order",
      collect,
    )
    .option(
      "--kube-apiserver-port <port>",
      "port for --kube-apiserver-url values given as a bare host (default 443)",
    )
    .option("--ca-file <file>", "cluster CA bundle: verifies the upstream and local client certificates")
    .option("--apiserver-ca-file <file>", "CA bundle for the upstream only (default: --ca-file)")
    .option("--tls-cert-file <file>", "serving certificate of the local listener")
    .option("--tls-private-key-file <file>", "serving private key of the local listener")
    .option("--address <ip>", "listen address; repeatable (default 127.0.0.1)", collect)
    .option("--port <port>", "listen port (default 51003)")
    .option(
      "--tls-config-file <file>",
      'client identities to present upstream: [{"cert": PATH, "key": PATH}]',
    )
    .option("--cache-backend <backend>", "sqlite or file (default sqlite)")
    .option("--cache-dir <dir>", "cache directory (default /var/lib/lite-apiserver)")
    .option(
      "--backend-timeout <duration>",
      "upstream time to respond before reads are served from cache (default 3s)",
    )
    .option("--write-timeout <duration>", "a write with no upstream answer by then gets a 504 (default 60s)")
    .option("--health-check-interval <duration>", "upstream probe interval (default 2s)")
    .option("--health-check-failures <n>", "failed probes in a row before going offline (default 2)")
    .option(
      "--cache-evict-after <duration>",
      "remove entries not refreshed for this long, online only (default 7d)",
    )
    .option("--write-queue-bytes <n>", "bound of the asynchronous cache write queue (default 67108864)")
    .option("--log-level <level>", "debug, info, warn or error (default info)")
    .option("--log-format <format>", "text or json (default text)")
    .option("--admin-address <ip>", "admin listener address (default 127.0.0.1)")
    .option(
      "--admin-port <port>",
      "admin listener port for /healthz, /readyz, /metrics; 0 disables (default 51004)",
    )
    // In-cluster clients (README "In-cluster clients").
    .option(
      "--kubernetes-service-rewrite <mode>",
      "show kube-proxy this node's lite-apiserver as the kubernetes Service's endpoint: auto, on or off " +
        "(default auto: on when a non-loopback --address or --kubernetes-service-endpoint is given)",
    )
    .option(
      "--kubernetes-service-endpoint <ip[:port]>",
      "the node address (and port, default --port) kube-proxy is given (default: the first non-loopback --address)",
    )
    .option(
      "--kube-proxy-identity <name>",
      "user name (client certificate CN) of the node's kube-proxy; repeatable (default system:kube-proxy)",
      collect,
    )
    .option(
      "--kubernetes-service-ip <ip>",
      "the kubernetes Service's ClusterIP for the serving-certificate check (default: read from the cluster)",
    )
    .option("--cluster-domain <domain>", "the cluster's DNS domain (default cluster.local)")
    .option("--cache-max-bytes <n>", "bound of the whole cache in bytes (default 2 GiB)")
    .option("--cache-max-entries <n>", "bound of the whole cache in entries (default 200000)")
    .option(
      "--cache-max-bytes-per-identity <n>",
      "bound of one identity's cache in bytes; its least recently used entries go first (default 512 MiB)",
    )
    .option(
      "--cache-max-entries-per-identity <n>",
      "bound of one identity's cache in entries (default 20000)",
    )
    .option(
      "--watch-event-max-bytes <n>",
      "a larger watch event is relayed but ends the caching of that watch (default 8388608)",
    )
    .option(
      "--admin-identities <show|hide>",
      "name cached identities in /status and /metrics (default show on loopback; required elsewhere)",
    )
    .option(
      "--request-header-timeout <duration>",
      "a request's head must arrive whole within this time of its first byte (default 60s)",
    )
    .option(
      "--max-request-body-bytes <n>",
      "larger request bodies are refused with 413, as the apiserver does (default 3145728)",
    )
    .option("--max-connections <n>", "open client connections beyond this get a 503 (default 2048)")
    // SuperEdge lite-apiserver's names, accepted so existing unit files keep working.
    .addOption(new Option("--timeout <duration>", "alias of --backend-timeout").hideHelp())
    .addOption(new Option("--cache-type <type>", "alias of --cache-backend (SuperEdge)").hideHelp())
    .addOption(new Option("--file-cache-path <dir>", "alias of --cache-dir (SuperEdge)").hideHelp());
  c.exitOverride();
  c.configureOutput({
    writeErr: () => {},
    writeOut: (s) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
  });
  return c;
}

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

function one(raw: Raw, key: Key): string | undefined {
  const v = raw[key];
  if (Array.isArray(v)) return v[v.length - 1];
  return v;
}

function many(raw: Raw, key: Key): string[] {
  const v = raw[key];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
}

function int(value: string | undefined, what: string, def: number, min: number, max: number): number {
  if (value === undefined) return def;
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

function validIp(a: string): boolean {
  return /^(\d{1,3}\.){3}\d{1,3}$/.test(a) && a.split(".").every((p) => Number(p) <= 255) ||
    /^[0-9a-fA-F:]+$/.test(a) && a.includes(":") || a === "localhost";
}

/** Parses `serve` arguments (without the subcommand). Returns null when --help was printed. */
export function parseServeArgs(argv: string[]): ServeConfig | null {
  const cmd = serveCommandSpec();
  try {
    cmd.parse(argv, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.help") return null;
      throw new ConfigError(e.message.replace(/^error: /, ""));
    }
    throw e;
  }
  if (cmd.args.length > 0) {
    throw new ConfigError(`unexpected argument "${cmd.args[0]}" (flags start with --)`);
  }
  const opts = cmd.opts() as Record<string, string | string[] | undefined>;
  const fromFile: Raw = opts.config ? readConfigFile(String(opts.config)) : {};
  const raw: Raw = { ...fromFile };
  for (const k of KEYS) {
    const v = opts[camel(k)];
    if (v !== undefined) raw[k] = v;
  }
  return resolveConfig(raw);
}

function resolveConfig(raw: Raw): ServeConfig {
  const notices: string[] = [];
  const port = int(one(raw, "kube-apiserver-port"), "--kube-apiserver-port", 443, 1, 65535);
  const urls = many(raw, "kube-apiserver-url");
  if (urls.length === 0) throw new ConfigError("--kube-apiserver-url is required (the cloud kube-apiserver)");
  const upstreams = [...new Set(urls.map((u) => normaliseUpstream(u, port)))];

  const caFile = readableFile(one(raw, "ca-file"), "--ca-file", true)!;
  const apiserverCaFile = readableFile(one(raw, "apiserver-ca-file"), "--apiserver-ca-file", false) ?? caFile;
  const tlsCertFile = readableFile(one(raw, "tls-cert-file"), "--tls-cert-file", true)!;
  const tlsKeyFile = readableFile(one(raw, "tls-private-key-file"), "--tls-private-key-file", true)!;
  const tlsConfigFile = readableFile(one(raw, "tls-config-file"), "--tls-config-file", false);

  const addresses = many(raw, "address");
  if (addresses.length === 0) addresses.push("127.0.0.1");
  for (const a of addresses) if (!validIp(a)) throw new ConfigError(`--address: "${a}" is not an IP address`);

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
  backend ??= "sqlite";
  if (backend !== "sqlite" && backend !== "file") {
    throw new ConfigError(`--cache-backend: "${backend}" is not a backend (use sqlite or file)`);
  }
  const cacheDir = one(raw, "cache-dir") ?? one(raw, "file-cache-path") ?? "/var/lib/lite-apiserver";

  const timeout = one(raw, "backend-timeout") ?? one(raw, "timeout");
  const backendTimeoutMs = parseDuration(timeout ?? "3s", "--backend-timeout");
  if (backendTimeoutMs < 100) {
    throw new ConfigError(`--backend-timeout: ${timeout} is too short (at least 100ms)`);
  }
  const writeTimeoutMs = parseDuration(one(raw, "write-timeout") ?? "60s", "--write-timeout");
  if (writeTimeoutMs < 1000) throw new ConfigError("--write-timeout: at least 1s");
  const healthIntervalMs = parseDuration(
    one(raw, "health-check-interval") ?? "2s",
    "--health-check-interval",
  );
  if (healthIntervalMs < 100) throw new ConfigError("--health-check-interval: at least 100ms");
  const evictAfterMs = parseDuration(one(raw, "cache-evict-after") ?? "7d", "--cache-evict-after");
  if (evictAfterMs < 60_000) throw new ConfigError("--cache-evict-after: at least 1m");

  const logLevel = (one(raw, "log-level") ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level: "${logLevel}" is not a level (use ${LOG_LEVELS.join(", ")})`);
  }
  const logFormat = (one(raw, "log-format") ?? "text") as LogFormat;
  if (logFormat !== "text" && logFormat !== "json") {
    throw new ConfigError(`--log-format: "${logFormat}" is not a format (use text or json)`);
  }
  const adminAddress = one(raw, "admin-address") ?? "127.0.0.1";
  if (!validIp(adminAddress)) {
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
        one(raw, "cache-max-bytes-per-identity"),
        "--cache-max-bytes-per-identity",
        DEFAULT_BOUNDS.perIdentity.bytes,
        1 << 16,
        2 ** 50,
      ),
      entries: int(
        one(raw, "cache-max-entries-per-identity"),
        "--cache-max-entries-per-identity",
        DEFAULT_BOUNDS.perIdentity.entries,
        1,
        1e9,
      ),
    },
    total: {
      bytes: int(
        one(raw, "cache-max-bytes"),
        "--cache-max-bytes",
        DEFAULT_BOUNDS.total.bytes,
        1 << 16,
        2 ** 50,
      ),
      entries: int(
        one(raw, "cache-max-entries"),
        "--cache-max-entries",
        DEFAULT_BOUNDS.total.entries,
        1,
        1e9,
      ),
    },
  };
  const requestHeaderTimeoutMs = parseDuration(
    one(raw, "request-header-timeout") ?? "60s",
    "--request-header-timeout",
  );
  if (requestHeaderTimeoutMs < 100) throw new ConfigError("--request-header-timeout: at least 100ms");

  return {
    cacheBounds,
    watchEventMaxBytes: int(
      one(raw, "watch-event-max-bytes"),
      "--watch-event-max-bytes",
      8 << 20,
      1024,
      2 ** 31,
    ),
    adminIdentities: (adminIdentities ?? "show") as "show" | "hide",
    upstreams,
    kubernetesService,
    caFile,
    apiserverCaFile,
    tlsCertFile,
    tlsKeyFile,
    addresses,
    port: int(one(raw, "port"), "--port", 51003, 0, 65535),
    tlsConfigFile,
    cacheBackend: backend,
    cacheDir,
    backendTimeoutMs,
    writeTimeoutMs,
    healthIntervalMs,
    healthFailures: int(one(raw, "health-check-failures"), "--health-check-failures", 2, 1, 100),
    evictAfterMs,
    writeQueueBytes: int(one(raw, "write-queue-bytes"), "--write-queue-bytes", 64 << 20, 1 << 20, 2 ** 40),
    logLevel,
    logFormat,
    adminAddress,
    adminPort: int(one(raw, "admin-port"), "--admin-port", 51004, 0, 65535),
    requestHeaderTimeoutMs,
    maxRequestBodyBytes: int(
      one(raw, "max-request-body-bytes"),
      "--max-request-body-bytes",
      3 * 1024 * 1024,
      1024,
      2 ** 40,
    ),
    maxConnections: int(one(raw, "max-connections"), "--max-connections", 2048, 1, 1_000_000),
    notices,
  };
}

/** A one-line summary for the start-up log. */
export function describeConfig(c: ServeConfig): string {
  return `upstreams=${c.upstreams.join(",")} listen=${c.addresses.map((a) => `${a}:${c.port}`).join(",")} ` +
    `cache=${c.cacheBackend}:${c.cacheDir} backend-timeout=${formatDuration(c.backendTimeoutMs)}`;
}
