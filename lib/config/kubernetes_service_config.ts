/**
 * In-cluster clients' settings: whether kube-proxy is shown the node's lite-apiserver as the
 * `kubernetes` Service's endpoint, at which address, for which identities; and what the SAN
 * check at start-up compares the serving certificate with.
 */
import { ConfigError } from "./errors.ts";
import { isIP } from "node:net";
import { isLoopback } from "./addresses.ts";

export type RewriteMode = "auto" | "on" | "off";

export interface KubernetesServiceConfig {
  /** The rewrite is on (resolved from auto/on/off and the bound addresses). */
  rewrite: boolean;
  /** Why it is on or off, for the start-up log. */
  reason: string;
  /** The node address kube-proxy is given (when on). */
  endpointIp: string;
  /** Its port; undefined: the port lite-apiserver listens on. */
  endpointPort?: number;
  /** User names (certificate CNs) of the node's kube-proxy. */
  proxyIdentities: string[];
  /** The Service's ClusterIP for the SAN check; undefined: read it from the cluster. */
  clusterIp?: string;
  clusterDomain: string;
}

export interface KubernetesServiceRaw {
  mode?: string;
  endpoint?: string;
  proxyIdentities: string[];
  clusterIp?: string;
  clusterDomain?: string;
}

function isWildcard(ip: string): boolean {
  return ip === "0.0.0.0" || ip === "::" || /^[0:]+$/.test(ip);
}

/** `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address. */
export function parseServiceEndpoint(value: string): { ip: string; port?: number } {
  const bad = () =>
    new ConfigError(
      `--kubernetes-service-endpoint: "${value}" is not IP or IP:PORT (e.g. 192.168.1.10:51003)`,
    );
  let ip = value.trim();
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(ip);
  if (v6) [, ip, port] = v6;
  else if ((ip.match(/:/g) ?? []).length === 1) [ip, port] = ip.split(":");
  if (isIP(ip) === 0 || isWildcard(ip)) throw bad();
  if (port === undefined) return { ip };
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw bad();
  return { ip, port: Number(port) };
}

/**
 * Resolves the settings. `auto` (the default) turns the rewrite on only when there is a node
 * address to give kube-proxy (a specific non-loopback `--address`, or the endpoint flag), so a
 * configuration that binds only 127.0.0.1 keeps starting as before; `on` without one is refused.
 */
export function resolveKubernetesService(
  raw: KubernetesServiceRaw,
  addresses: string[],
): KubernetesServiceConfig {
  const mode = (raw.mode ?? "auto") as RewriteMode;
  if (!["auto", "on", "off"].includes(mode)) {
    throw new ConfigError(`--kubernetes-service-rewrite: "${raw.mode}" is not auto, on or off`);
  }
  const proxyIdentities = raw.proxyIdentities.length
    ? [...new Set(raw.proxyIdentities)]
    : ["system:kube-proxy"];
  const clusterDomain = (raw.clusterDomain ?? "cluster.local").replace(/\.$/, "");
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(clusterDomain)) {
    throw new ConfigError(`--cluster-domain: "${raw.clusterDomain}" is not a DNS domain`);
  }
  const clusterIp = raw.clusterIp?.trim() || undefined;
  if (clusterIp !== undefined && isIP(clusterIp) === 0) {
    throw new ConfigError(`--kubernetes-service-ip: "${clusterIp}" is not an IP address`);
  }
  const explicit = raw.endpoint ? parseServiceEndpoint(raw.endpoint) : undefined;
  const nodeAddress = addresses.find((a) => !isLoopback(a) && !isWildcard(a));
  const ip = explicit?.ip ?? nodeAddress;
  const base = { proxyIdentities, clusterIp, clusterDomain, endpointPort: explicit?.port };
  if (mode === "off") {
    return { ...base, rewrite: false, reason: "--kubernetes-service-rewrite off", endpointIp: "" };
  }
  if (!ip) {
    if (mode === "on") {
      throw new ConfigError(
        "--kubernetes-service-rewrite on needs a node address for kube-proxy: bind a non-loopback " +
          "--address or set --kubernetes-service-endpoint IP:PORT",
      );
    }
    return {
      ...base,
      rewrite: false,
      reason: "no node address (only loopback or wildcard --address, no --kubernetes-service-endpoint)",
      endpointIp: "",
    };
  }
  return {
    ...base,
    rewrite: true,
    reason: explicit ? "--kubernetes-service-endpoint" : `--address ${ip}`,
    endpointIp: ip,
  };
}
