/**
 * Decides, per request, what the cache records from the answer, and so what the cache may answer
 * offline: objects, itemised JSON lists, watch events, whole Tables, TokenRequests.
 */
import type { Identity } from "../identity/identity.ts";
import { queryFlag, type RequestInfo } from "../request/request_info.ts";
import {
  isAggregatedDiscovery,
  type Representation,
  representationOfContentType,
} from "../request/representation.ts";
import { cacheKeyFor } from "./cache_key.ts";
import type { CachePlan } from "./response_tap.ts";
import { tokenRequestPlan } from "./token_requests.ts";

const CACHEABLE_REPS = new Set<Representation>([
  "json",
  "table",
  "pom",
  "pomlist",
  "apidiscovery-v2",
  "apidiscovery-v2beta1",
]);
const NOT_CACHED_PATHS = /^\/(healthz|livez|readyz|metrics|logs|debug)(\/|$)/;

/** What to cache for a request (and so what may be served from the cache), if anything. */
export function planFor(
  identity: Identity,
  info: RequestInfo,
  rep: Representation,
  method: string,
  body?: Uint8Array,
): CachePlan | undefined {
  // Credentials the proxy cannot classify: forwarded, never cached, never answered from the cache.
  if (identity.kind === "uncertain") return undefined;
  if (method === "POST" && body) return tokenRequestPlan(identity, info, rep, body);
  if (method !== "GET" || !CACHEABLE_REPS.has(rep)) return undefined;
  if (!info.isResourceRequest) {
    if (NOT_CACHED_PATHS.test(info.path) || info.verb !== "get") return undefined;
    const key = cacheKeyFor(identity.cacheId, info, rep);
    if (!isAggregatedDiscovery(rep)) return { kind: "object", key, requestContinue: "" };
    // A client that accepts several discovery versions gets the first the apiserver serves: the
    // answer is keyed by what it is (its Content-Type), so each version keeps its own entry.
    const keyFor = (contentType: string) => {
      const answered = representationOfContentType(contentType);
      return answered === "json" || (answered !== undefined && isAggregatedDiscovery(answered))
        ? cacheKeyFor(identity.cacheId, info, answered)
        : undefined;
    };
    return { kind: "object", key, requestContinue: "", keyFor };
  }
  const key = cacheKeyFor(identity.cacheId, info, rep);
  const requestContinue = info.query.get("continue") ?? "";
  switch (info.verb) {
    case "get":
      return { kind: "object", key, requestContinue };
    case "list":
      if (rep === "json") return { kind: "list", key, requestContinue };
      // Other list shapes (Tables) are stored whole: only complete, unpaged answers.
      return requestContinue ? undefined : { kind: "object", key, requestContinue, wholeListOnly: true };
    case "watch": {
      // Followed so that a watch cut mid-stream can be held from where the client is.
      const progress = { lastRv: "", kind: "", apiVersion: "", partial: false };
      if (rep === "json") {
        const initialEvents = queryFlag(info.query, "sendInitialEvents");
        return { kind: "watch", key, requestContinue, progress, ...(initialEvents ? { initialEvents } : {}) };
      }
      // Table watches (`kubectl get -w`) are not recorded, but held offline like JSON ones.
      return rep === "table" ? { kind: "follow", key, requestContinue, progress } : undefined;
    }
    default:
      return undefined;
  }
}
