/**
 * Reads the `default/kubernetes` Service's ClusterIP from the cloud, for the start-up check of the
 * serving certificate. It asks with one of the configured client identities (kube-proxy's first:
 * it may read Services), never answers anyone with it, and gives up quietly when none can.
 */
import https from "node:https";
import type { PairMaterial } from "./agents.ts";

export interface ClusterIpRead {
  clusterIp?: string;
  /** Why it could not be read. */
  error?: string;
}

const PATH = "/api/v1/namespaces/default/services/kubernetes";

function getJson(url: string, pair: PairMaterial, caPem: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const u = new URL(url + PATH);
    const req = https.request({
      hostname: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || 443),
      path: u.pathname,
      method: "GET",
      headers: { accept: "application/json" },
      ca: caPem,
      cert: pair.certPem,
      key: pair.keyPem,
      agent: false,
      timeout: timeoutMs,
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)));
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode} as ${pair.cn}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.end();
  });
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
