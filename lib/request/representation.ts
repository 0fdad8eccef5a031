/**
 * Which representation of a resource a client asks for, from its Accept header.
 *
 * Like the apiserver, the first acceptable media range (by q, then by order) wins, and ranges we
 * cannot produce are skipped. We always negotiate JSON: protobuf is only the answer when nothing
 * JSON-compatible is offered. The representation is part of the cache key, so a Table is never
 * served to a client that asked for a plain list.
 */

/**
 * - `json`: plain objects and lists.
 * - `table`: `as=Table` (meta.k8s.io v1 or v1beta1), what `kubectl get` asks for.
 * - `pom` / `pomlist`: `as=PartialObjectMetadata` / `as=PartialObjectMetadataList`.
 * - `apidiscovery-v2` / `apidiscovery-v2beta1`: aggregated discovery, `as=APIGroupDiscoveryList` of
 *   apidiscovery.k8s.io v2 or v2beta1. Kept apart: client-go <= 1.29 (kubectl 1.27-1.29) reads only
 *   v2beta1, and a v2 document makes it see no resources at all.
 * - `protobuf-only`: only `application/vnd.kubernetes.protobuf` is acceptable.
 * - `other`: anything else (yaml, cbor, text/html...).
 */
export type Representation =
  | "json"
  | "table"
  | "pom"
  | "pomlist"
  | "apidiscovery-v2"
  | "apidiscovery-v2beta1"
  | "protobuf-only"
  | "other";

interface MediaRange {
  type: string;
  params: Map<string, string>;
  q: number;
  index: number;
}

function parseAccept(accept: string): MediaRange[] {
  const out: MediaRange[] = [];
  accept.split(",").forEach((clause, index) => {
    const [typePart, ...paramParts] = clause.split(";");
    const type = typePart.trim().toLowerCase();
    if (type === "") return;
    const params = new Map<string, string>();
    for (const p of paramParts) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const k = p.slice(0, eq).trim().toLowerCase();
      const v = p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
      params.set(k, v);
    }
    const qRaw = params.get("q");
    const q = qRaw === undefined ? 1 : Number(qRaw);
    out.push({ type, params, q: Number.isFinite(q) ? q : 0, index });
  });
  // Stable: higher q first, then the client's order.
  return out.filter((m) => m.q > 0).sort((a, b) => b.q - a.q || a.index - b.index);
}

const JSON_TYPES = new Set(["application/json", "*/*", "application/*"]);
const OTHER_TYPES = new Set(["application/yaml", "application/cbor", "application/cbor-seq"]);
const PROTOBUF = "application/vnd.kubernetes.protobuf";
const META_VERSIONS = new Set(["v1", "v1beta1"]);
const DISCOVERY_REPS: Record<string, Representation> = {
  v2: "apidiscovery-v2",
  v2beta1: "apidiscovery-v2beta1",
};
const DISCOVERY_GROUP = "apidiscovery.k8s.io";

/** What one media range asks for, or undefined when it is not something we can answer. */
function rangeRepresentation(m: MediaRange): Representation | "protobuf" | undefined {
  const as = m.params.get("as");
  if (as === undefined) {
    if (JSON_TYPES.has(m.type)) return "json";
    if (m.type === PROTOBUF) return "protobuf";
    // Types the apiserver can produce but we do not model: keyed apart, forwarded as they are.
    if (OTHER_TYPES.has(m.type)) return "other";
    return undefined;
  }
  // Transformed representations: we only produce them as JSON.
  if (!JSON_TYPES.has(m.type)) return undefined;
  const g = m.params.get("g") ?? "";
  const v = m.params.get("v") ?? "";
  if (as === "APIGroupDiscoveryList") {
    return g === DISCOVERY_GROUP && Object.hasOwn(DISCOVERY_REPS, v) ? DISCOVERY_REPS[v] : undefined;
  }
  if (g !== "meta.k8s.io" || !META_VERSIONS.has(v)) return undefined;
  if (as === "Table") return "table";
  if (as === "PartialObjectMetadata") return "pom";
  if (as === "PartialObjectMetadataList") return "pomlist";
  return undefined;
}

/**
 * The representation a client wants. Empty or absent Accept means JSON. Yaml or cbor as the first
 * acceptable range, or nothing acceptable at all (the apiserver would answer 406), yields `other`.
 */
export function representationOf(accept: string | null | undefined): Representation {
  if (accept === null || accept === undefined || accept.trim() === "") return "json";
  let protobuf = false;
  for (const m of parseAccept(accept)) {
    const r = rangeRepresentation(m);
    if (r === undefined) continue;
    if (r === "protobuf") {
      protobuf = true;
      continue;
    }
    return r;
  }
  return protobuf ? "protobuf-only" : "other";
}

/** True for the aggregated discovery representations. */
export function isAggregatedDiscovery(rep: Representation): boolean {
  return rep === "apidiscovery-v2" || rep === "apidiscovery-v2beta1";
}

/**
 * The discovery representations a client accepts, in its order of preference: aggregated v2,
 * v2beta1 and plain JSON (the legacy, unaggregated documents), each at most once. An offline
 * answer may be any of these, and only these.
 */
export function discoveryPreferences(accept: string | null | undefined): Representation[] {
  if (accept === null || accept === undefined || accept.trim() === "") return ["json"];
  const out: Representation[] = [];
  for (const m of parseAccept(accept)) {
    const r = rangeRepresentation(m);
    if (
      (r === "json" || (r !== undefined && r !== "protobuf" && isAggregatedDiscovery(r))) && !out.includes(r)
    ) {
      out.push(r);
    }
  }
  return out;
}

/**
 * The representation an answer is in, from its Content-Type: what it must be cached as, whatever
 * the request asked for (an apiserver that does not serve a version answers with the next one the
 * client accepts). undefined for a type the cache does not key (protobuf, yaml...).
 */
export function representationOfContentType(contentType: string): Representation | undefined {
  const [m] = parseAccept(contentType.split(",")[0]);
  if (!m) return undefined;
  const r = rangeRepresentation(m);
  return r === "protobuf" || r === "other" ? undefined : r;
}
