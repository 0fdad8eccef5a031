/**
 * The cost of kube-proxy's answer rewrite (in-cluster clients), in-process: a 5,000-Service
 * EndpointsList with and without the kubernetes Endpoints, and single watch lines.
 *
 *   ./scripts/deno run -A bench/kubernetes_service_rewrite.ts
 */
import { rewriteBody, rewriteWatchLine } from "../lib/rewrite/kubernetes_endpoints.ts";

const to = { ip: "192.168.1.10", port: 51003 };
const items: Record<string, unknown>[] = [];
for (let i = 0; i < 5000; i++) {
  const ns = `ns-${i % 50}`;
  items.push({
    metadata: { name: `svc-${i}`, namespace: ns, resourceVersion: String(i), labels: { app: `a${i}` } },
    subsets: [{
      addresses: [{
        ip: `10.0.${i >> 8}.${i & 255}`,
        nodeName: "edge-1",
        targetRef: { kind: "Pod", name: `p-${i}`, namespace: ns },
      }],
      ports: [{ name: "http", port: 80, protocol: "TCP" }],
    }],
  });
}
const kubernetes = {
  metadata: { name: "kubernetes", namespace: "default" },
  subsets: [{ addresses: [{ ip: "192.168.50.1" }], ports: [{ name: "https", port: 6443, protocol: "TCP" }] }],
};
const list = (xs: unknown[]) =>
  new TextEncoder().encode(
    JSON.stringify({ kind: "EndpointsList", apiVersion: "v1", metadata: {}, items: xs }),
  );
const withIt = list([...items, kubernetes]);
const without = list(items);

function time(label: string, n: number, f: () => unknown): void {
  for (let i = 0; i < 3; i++) f();
  const t = performance.now();
  for (let i = 0; i < n; i++) f();
  const us = (performance.now() - t) * 1000 / n;
  console.log(`${label}: ${us < 1000 ? `${us.toFixed(2)} µs` : `${(us / 1000).toFixed(1)} ms`}`);
}

console.log(`EndpointsList of 5,001 Services: ${(withIt.byteLength / 1e6).toFixed(2)} MB`);
time(
  "list with the kubernetes Endpoints (parse, rewrite, serialise)",
  20,
  () => rewriteBody(withIt, to, "endpoints", ""),
);
time("list without it (pre-check only)", 20, () => rewriteBody(without, to, "endpoints", ""));
const line = (o: object) =>
  JSON.stringify({ type: "MODIFIED", object: { kind: "Endpoints", apiVersion: "v1", ...o } });
const other = line(items[7]);
const ours = line(kubernetes);
time("watch line, another Service", 100_000, () => rewriteWatchLine(other, to, "endpoints", ""));
time("watch line, the kubernetes Endpoints", 100_000, () => rewriteWatchLine(ours, to, "endpoints", ""));
