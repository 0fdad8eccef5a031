/**
 * Aggregated discovery offline across versions: apidiscovery.k8s.io v2 is v2beta1 promoted with the
 * same fields, so a cached APIGroupDiscoveryList of one version is served to a client that reads
 * only the other (kubectl 1.27-1.29 after 1.30+ primed the cache, or the reverse) by changing its
 * apiVersion and Content-Type, never by serving a version the client did not ask for.
 */
import type { Representation } from "../request/representation.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

type AggregatedRep = "apidiscovery-v2" | "apidiscovery-v2beta1";

const VERSION: Record<AggregatedRep, string> = { "apidiscovery-v2": "v2", "apidiscovery-v2beta1": "v2beta1" };

/** The other aggregated discovery representation: the one `rep` can be converted from. */
export function otherDiscoveryVersion(rep: AggregatedRep): AggregatedRep {
  return rep === "apidiscovery-v2" ? "apidiscovery-v2beta1" : "apidiscovery-v2";
}

/** The Content-Type of aggregated discovery in `rep`. */
export function discoveryContentType(rep: AggregatedRep): string {
  return `application/json;g=apidiscovery.k8s.io;v=${VERSION[rep]};as=APIGroupDiscoveryList`;
}

/**
 * `body`, an APIGroupDiscoveryList in `from`, as one in `to`; undefined when it is not exactly an
 * APIGroupDiscoveryList of `from` (nothing else is converted).
 */
export function convertDiscovery(
  body: Uint8Array,
  from: AggregatedRep,
  to: AggregatedRep,
): Uint8Array | undefined {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(dec.decode(body));
  } catch {
    return undefined;
  }
  if (
    typeof doc !== "object" || doc === null || doc.kind !== "APIGroupDiscoveryList" ||
    doc.apiVersion !== `apidiscovery.k8s.io/${VERSION[from]}`
  ) return undefined;
  return enc.encode(JSON.stringify({ ...doc, apiVersion: `apidiscovery.k8s.io/${VERSION[to]}` }));
}

export function isAggregatedRep(rep: Representation): rep is AggregatedRep {
  return rep === "apidiscovery-v2" || rep === "apidiscovery-v2beta1";
}
