/**
 * Reads the `default/kubernetes` Service's ClusterIP from the cloud, for the start-up check of the
 * serving certificate. It asks with one of the configured client identities (kube-proxy's first:
 * it may read Services), never answers anyone with it, and gives up quietly when none can.
 */
import type { PairMaterial } from "./agents.ts";
import { endpointOf } from "./endpoint.ts";
import { UpstreamPool } from "./pool.ts";

export interface ClusterIpRead {
  clusterIp?: string;
  /** Why it could not be read. */
  error?: string;
}

const PATH = "/api/v1/namespaces/default/services/kubernetes";

/** One GET with a throwaway pool of that identity (the same client the proxy uses, HTTPS_PROXY included). */
async function getJson(url: string, pair: PairMaterial, caPem: string, timeoutMs: number): Promise<unknown> {
  const pool = new UpstreamPool({ ca: caPem, cert: pair.certPem, key: pair.keyPem });
  const ep = endpointOf(url);
  const call = pool.request(ep, {
    method: "GET",
    path: ep.prefix + PATH,
    headers: { host: ep.host, accept: "application/json" },
  });
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    call.abort();
  }, timeoutMs);
  try {
    const res = await call.response.catch((e: Error) => {
      throw new Error(expired ? `no answer within ${timeoutMs}ms` : e.message);
    });
    const chunks: Uint8Array[] = [];
    for await (const c of res) chunks.push(c as Uint8Array);
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} as ${pair.cn}`);
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } finally {
    clearTimeout(timer);
    pool.destroy();
  }
}

export async function readKubernetesClusterIp(
  upstreams: string[],
  pairs: PairMaterial[],
  preferredCns: string[],
  caPem: string,
  timeoutMs: number,
): Promise<ClusterIpRead> {
  if (pairs.length === 0) return { error: "no client identity is configured (--tls-config-file)" };
  const ordered = [
    ...pairs.filter((p) => preferredCns.includes(p.cn)),
    ...pairs.filter((p) => !preferredCns.includes(p.cn)),
  ];
  let last = "";
  for (const url of upstreams) {
    for (const pair of ordered) {
      try {
        const svc = await getJson(url, pair, caPem, timeoutMs) as { spec?: { clusterIP?: unknown } };
        const ip = svc?.spec?.clusterIP;
        if (typeof ip === "string" && ip && ip !== "None") return { clusterIp: ip };
        return { error: "the Service has no ClusterIP" };
      } catch (e) {
        last = (e as Error).message;
      }
    }
  }
  return { error: last };
}
