/**
 * Decides, per request, what the cache records from the answer, and so what the cache may answer
 * offline: objects, itemised JSON lists, watch events, whole Tables, TokenRequests.
 */
import { createHash } from "node:crypto";
import type { Identity } from "../identity/identity.ts";
import { queryFlag, type RequestInfo } from "../request/request_info.ts";
import {
  isAggregatedDiscovery,
  type Representation,
  representationOfContentType,
} from "../request/representation.ts";
import { cacheKeyFor } from "./cache_key.ts";
import type { CacheKey } from "../store/store.ts";
import { isTokenRequest } from "./token_requests.ts";

/**
 * How far a watch relayed to the client has got: what a held watch carries on from when the
 * upstream stream is cut (lib/offline/held_watches.ts).
 */
export interface WatchProgress {
  /** The resourceVersion of the last whole event relayed ("" before the first). */
  lastRv: string;
  /** kind and apiVersion of the watched objects, from the last event (for BOOKMARKs). */
  kind: string;
  apiVersion: string;
  /** The client has part of an event, or the watch is no longer followed: it cannot carry on cleanly. */
  partial: boolean;
}

/** What to do with a cacheable response. */
export interface CachePlan {
  /**
   * object: put as is; list: itemise (JSON lists); watch: patch the list under `key`; follow: a
   * watch that is not recorded (Tables), only followed for its progress.
   */
  kind: "object" | "list" | "watch" | "follow";
  key: CacheKey;
  /** The continue token the client sent, for paged lists. */
  requestContinue: string;
  /** A list stored as one object: cached only if the answer is not a first page of several. */
  wholeListOnly?: boolean;
  /**
   * Objects whose key depends on the answer (discovery: the version the apiserver chose): the key
   * for the answer's Content-Type, undefined to not cache it. Without it, `key` is used.
   */
  keyFor?: (contentType: string) => CacheKey | undefined;
  /** The status that is cached (200, or 201 for a TokenRequest). */
  status?: number;
  /**
   * Watches with `sendInitialEvents=true` (WatchList): the events up to the initial-events-end
   * BOOKMARK replace the list under `key`. Consumed by the first tapped stream: a resumed watch
   * (same plan) has no initial events.
   */
  initialEvents?: boolean;
  /** Watches: updated as events are relayed. */
  progress?: WatchProgress;
}

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

/** TokenRequests (see token_requests.ts): keyed by the request body, cached as the 201 answered. */
export function tokenRequestPlan(
  identity: Identity,
  info: RequestInfo,
  rep: Representation,
  body: Uint8Array,
): CachePlan | undefined {
  if (!isTokenRequest(info) || (rep !== "json" && rep !== "protobuf-only")) return undefined;
  const key = cacheKeyFor(identity.cacheId, { ...info, verb: "get" }, "json");
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 32);
  const name = `${key.name}~b=${hash}`;
  if (name.length > 200 || rep !== "json") return undefined;
  return { kind: "object", key: { ...key, name }, requestContinue: "", status: 201 };
}
