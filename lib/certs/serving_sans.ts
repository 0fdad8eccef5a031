/**
 * Which of the names and addresses in-cluster clients verify lite-apiserver as (the `kubernetes`
 * Service's DNS names and ClusterIP) the serving certificate lacks.
 */
import { X509Certificate } from "node:crypto";

/** The names client-go and kubectl may check for the `kubernetes` Service. */
export function kubernetesServiceNames(clusterDomain: string): string[] {
  return [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    `kubernetes.default.svc.${clusterDomain}`,
  ];
}

/** DNS names and IP addresses in a certificate's subjectAltName. */
export function certSans(certPem: string): { dns: string[]; ips: string[] } {
  const alt = new X509Certificate(certPem).subjectAltName ?? "";
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of alt.split(/,\s*/)) {
    const m = /^(DNS|IP Address):(.*)$/.exec(part.trim());
    if (!m) continue;
    if (m[1] === "DNS") dns.push(m[2].toLowerCase());
    else ips.push(m[2]);
  }
  return { dns, ips };
}

function sameIp(a: string, b: string): boolean {
  const norm = (ip: string) => ip.includes(":") ? expandV6(ip) : ip;
  return norm(a) === norm(b);
}

function expandV6(ip: string): string {
  const [head, tail = ""] = ip.toLowerCase().split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = ip.includes("::") ? Array(8 - h.length - t.length).fill("0") : [];
  return [...h, ...fill, ...t].map((g) => g.replace(/^0+(?=.)/, "")).join(":");
}

/** The SANs in-cluster clients need that the certificate lacks ("IP:…" / "DNS:…"), in order. */
export function missingKubernetesSans(
  certPem: string,
  clusterIp: string | undefined,
  clusterDomain: string,
): string[] {
  const { dns, ips } = certSans(certPem);
  const missing: string[] = [];
  if (clusterIp && !ips.some((ip) => sameIp(ip, clusterIp))) missing.push(`IP:${clusterIp}`);
  for (const name of kubernetesServiceNames(clusterDomain)) {
    if (!dns.includes(name)) missing.push(`DNS:${name}`);
  }
  return missing;
}
