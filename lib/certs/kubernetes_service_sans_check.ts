/**
 * The start-up check for in-cluster clients: once kube-proxy sends the `kubernetes` Service's
 * traffic to this node, pods verify lite-apiserver's serving certificate as the Service's names or
 * ClusterIP. Warns, naming the missing SANs, when it lacks them (again after each reload).
 */
import { log } from "../log.ts";
import { missingKubernetesSans } from "./serving_sans.ts";

export interface SansCheckOptions {
  clusterDomain: string;
  /** The ClusterIP (flag, or read from the cluster), or why it is unknown. */
  clusterIp(): Promise<{ clusterIp?: string; error?: string }>;
}

export function createSansCheck(opts: SansCheckOptions): (certPem: string) => Promise<void> {
  let known: string | undefined;
  return async (certPem: string) => {
    if (known === undefined) {
      const read = await opts.clusterIp();
      if (read.clusterIp) known = read.clusterIp;
      else {
        log.warn(
          "cannot read the kubernetes Service's ClusterIP: checking the serving certificate's DNS names only " +
            "(set --kubernetes-service-ip)",
          { reason: read.error },
        );
      }
    }
    let missing: string[];
    try {
      missing = missingKubernetesSans(certPem, known, opts.clusterDomain);
    } catch (e) {
      return log.warn("cannot read the serving certificate's SANs", { reason: (e as Error).message });
    }
    if (missing.length) {
      log.warn(
        `serving certificate lacks SANs that in-cluster clients verify: ${missing.join(", ")}; ` +
          `pods reaching the API through this node will reject it (README: "In-cluster clients")`,
      );
    } else {
      log.info("serving certificate has the kubernetes Service's SANs", { clusterIp: known });
    }
  };
}
