/**
 * `lite-apiserver autonomy`: the cloud-side controller that keeps pods on opted-in edge nodes from
 * being evicted while their node is unreachable. Parses flags, connects (kubeconfig or
 * in-cluster), lists once (an unreachable apiserver is one clear line and exit 2), then runs until
 * SIGTERM/SIGINT.
 */
import { ConfigError } from "../config/errors.ts";
import { type Flag, flagValue, helpText, parseFlags } from "../config/flags.ts";
import { configureLog, log, LOG_LEVELS, type LogFormat, type LogLevel } from "../log.ts";
import { startAutonomyAdmin } from "../autonomy/admin.ts";
import { type ClusterConfig, fromKubeconfig, inCluster } from "../autonomy/cluster_config.ts";
import { AutonomyController } from "../autonomy/controller.ts";
import { KubeClient, KubeError, unreachableReason } from "../autonomy/kube_client.ts";
import { parseDuration } from "../config/duration.ts";

export const DEFAULT_NODE_SELECTOR = "lite-apiserver.io/autonomy=true";

const USAGE = `Usage: lite-apiserver autonomy [flags]

Runs in the cloud (e.g. the Deployment in deploy/autonomy.yaml). For every pod bound to a node
matching --node-selector, removes tolerationSeconds from the pod's node.kubernetes.io/unreachable
and node.kubernetes.io/not-ready NoExecute tolerations, so the taint manager never evicts it while
the node is cut off; when a node stops matching, puts the recorded seconds back.`;

/** `autonomy`'s flags: parsing, help and defaults. */
const AUTONOMY_FLAGS: readonly Flag[] = [
  {
    name: "kubeconfig",
    arg: "FILE",
    help: "kubeconfig to use (client certificate or token); default: in-cluster " +
      "(KUBERNETES_SERVICE_HOST/PORT and the mounted ServiceAccount token + CA)",
  },
  {
    name: "node-selector",
    arg: "SEL",
    help: "label selector of the opted-in nodes",
    default: DEFAULT_NODE_SELECTOR,
  },
  { name: "admin-address", arg: "IP", help: "address of /healthz, /readyz, /metrics", default: "127.0.0.1" },
  { name: "admin-port", arg: "PORT", help: "its port; 0 = random", default: "51005" },
  {
    name: "request-timeout",
    arg: "DURATION",
    help: "how long one request to the kube-apiserver may take (the first list included)",
    default: "30s",
  },
  { name: "log-level", arg: "LEVEL", help: "debug, info, warn or error", default: "info" },
  { name: "log-format", arg: "FORMAT", help: "text or json", default: "text" },
];

export interface AutonomyArgs {
  kubeconfig?: string;
  nodeSelector: string;
  adminAddress: string;
  adminPort: number;
  requestTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** Parses the flags; null when help was printed. Throws ConfigError on anything wrong. */
export function parseAutonomyArgs(args: string[]): AutonomyArgs | null {
  const p = parseFlags("autonomy", AUTONOMY_FLAGS, args);
  if (p.help) {
    console.log(helpText(USAGE, AUTONOMY_FLAGS));
    return null;
  }
  const get = (name: string) => flagValue(AUTONOMY_FLAGS, p, name)!;
  const port = get("admin-port");
  if (!/^\d+$/.test(port) || Number(port) > 65535) {
    throw new ConfigError(`autonomy: --admin-port ${port}: not a port`);
  }
  const requestTimeoutMs = parseDuration(get("request-timeout"), "autonomy: --request-timeout");
  if (requestTimeoutMs <= 0) throw new ConfigError("autonomy: --request-timeout must be more than 0");
  const logLevel = get("log-level") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`autonomy: --log-level ${logLevel}: expected ${LOG_LEVELS.join(", ")}`);
  }
  const logFormat = get("log-format");
  if (logFormat !== "text" && logFormat !== "json") {
    throw new ConfigError(`autonomy: --log-format ${logFormat}: expected text or json`);
  }
  return {
    kubeconfig: flagValue(AUTONOMY_FLAGS, p, "kubeconfig"),
    nodeSelector: get("node-selector"),
    adminAddress: get("admin-address"),
    adminPort: Number(port),
    requestTimeoutMs,
    logLevel,
    logFormat,
  };
}

/** Turns a failed first list into one line saying what is wrong, and from which configuration. */
export function startError(cfg: ClusterConfig, args: AutonomyArgs, e: unknown): ConfigError {
  const source = cfg.source === "in-cluster" ? "in-cluster configuration" : `kubeconfig ${cfg.source}`;
  const where = `kube-apiserver ${cfg.server} (${source})`;
  if (e instanceof KubeError) {
    if (e.status === 401) {
      return new ConfigError(`autonomy: ${where} rejected the credentials (401 Unauthorized)`);
    }
    if (e.status === 403) return new ConfigError(`autonomy: ${where}: 403 Forbidden: ${e.message}`);
    if (e.status === 400) {
      return new ConfigError(`autonomy: --node-selector ${args.nodeSelector}: ${e.message}`);
    }
    return new ConfigError(`autonomy: ${where} answered ${e.status}: ${e.message}`);
  }
  return new ConfigError(`autonomy: cannot reach ${where}: ${unreachableReason(e, args.requestTimeoutMs)}`);
}

export async function autonomyCommand(argv: string[]): Promise<number> {
  const args = parseAutonomyArgs(argv);
  if (!args) return 0;
  configureLog({ level: args.logLevel, format: args.logFormat });
  const cfg = args.kubeconfig ? await fromKubeconfig(args.kubeconfig) : await inCluster();
  let client: KubeClient;
  try {
    client = new KubeClient(cfg, args.requestTimeoutMs);
  } catch (e) {
    throw new ConfigError(`autonomy: TLS settings of ${cfg.source}: ${(e as Error).message.split("\n")[0]}`);
  }
  const controller = new AutonomyController(client, { nodeSelector: args.nodeSelector });
  const admin = await startAutonomyAdmin(
    args.adminAddress,
    args.adminPort,
    controller.registry,
    () => controller.ready,
  );
  try {
    await controller.start();
  } catch (e) {
    await admin.close();
    client.close();
    throw startError(cfg, args, e);
  }
  // Only now: a start-up failure is the one line above, with nothing before it.
  log.info(`autonomy admin listening on ${admin.url}`);
  log.info("autonomy: running", { server: cfg.server, selector: args.nodeSelector });
  const stopped = Promise.withResolvers<void>();
  const stop = (signal: string) => {
    log.info("autonomy: shutting down", { signal });
    stopped.resolve();
  };
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  await stopped.promise;
  await controller.stop();
  await admin.close();
  client.close();
  return 0;
}
