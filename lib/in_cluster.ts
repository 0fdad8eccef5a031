/**
 * Wiring for in-cluster clients: the answer rewrite kube-proxy's requests get (its endpoint's port
 * known once the listener is bound), the start-up log line, and the serving certificate's SAN
 * check at start and after each reload.
 */
import type { ServeConfig } from "./config/serve_config.ts";
import { log } from "./log.ts";
import type { KubernetesServiceRewrite } from "./rewrite/answer_rewrite.ts";
import { createSansCheck } from "./certs/kubernetes_service_sans_check.ts";
import { readKubernetesClusterIp } from "./upstream/kubernetes_service_ip.ts";
import type { PairMaterial } from "./upstream/agents.ts";

export interface InClusterSupport {
  /** Handed to the router; undefined when the rewrite is off. */
  rewrite?: KubernetesServiceRewrite;
  /** The listener is bound: fixes the endpoint's port, logs, checks the serving certificate. */
  listening(port: number, servingCertPem: string): void;
  /** A new serving certificate was loaded. */
  servingChanged(certPem: string): void;
}

export function inClusterSupport(
  config: ServeConfig,
  upstream: { pairs: PairMaterial[]; caPem: string },
): InClusterSupport {
  const ks = config.kubernetesService;
  const rewrite: KubernetesServiceRewrite | undefined = ks.rewrite
    ? {
      endpoint: { ip: ks.endpointIp, port: ks.endpointPort ?? config.port },
      proxyIdentities: new Set(ks.proxyIdentities),
    }
    : undefined;
  const sansCheck = rewrite
    ? createSansCheck({
      clusterDomain: ks.clusterDomain,
      clusterIp: () =>
        ks.clusterIp ? Promise.resolve({ clusterIp: ks.clusterIp }) : readKubernetesClusterIp(
          config.upstreams,
          upstream.pairs,
          ks.proxyIdentities,
          upstream.caPem,
          config.backendTimeoutMs,
        ),
    })
    : undefined;
  return {
    rewrite,
    listening(port, servingCertPem) {
      if (!rewrite) {
        log.info("in-cluster clients: the kubernetes Service is not rewritten", { reason: ks.reason });
        return;
      }
      if (ks.endpointPort === undefined) rewrite.endpoint.port = port;
      const { ip } = rewrite.endpoint;
      const at = ip.includes(":") ? `[${ip}]:${rewrite.endpoint.port}` : `${ip}:${rewrite.endpoint.port}`;
      log.info(
        `in-cluster clients: kube-proxy (${
          ks.proxyIdentities.join(", ")
        }) is shown the kubernetes Service at ${at}`,
        { reason: ks.reason },
      );
      if (!upstream.pairs.some((p) => ks.proxyIdentities.includes(p.cn))) {
        log.warn(
          "in-cluster clients: no client pair for kube-proxy's identity in --tls-config-file yet: its requests " +
            "are forwarded without credentials and not rewritten until one is added (kubeconfig redirect)",
          { identities: ks.proxyIdentities.join(",") },
        );
      }
      // Not awaited: a slow or unreachable cloud must not delay serving.
      sansCheck?.(servingCertPem);
    },
    servingChanged(certPem) {
      sansCheck?.(certPem);
    },
  };
}
