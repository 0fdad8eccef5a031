/**
 * Answers a request from the cache while the upstream is unreachable. Reads get the cached answer
 * (or one derived from a broader cached list); a miss is an honest 503, never a 404; writes get a
 * 503 at once, except a kubelet registering a Node the cache holds (409 AlreadyExists, as the
 * apiserver would say, so kubelet carries on with the cached Node).
 */
import type { Cache } from "../cache/cache.ts";
import type { RequestContext } from "../exchange/context.ts";
import { cacheKeyFor } from "../cache/cache_key.ts";
import { assembleList, parseJson } from "../cache/list_codec.ts";
import type { StoredObject } from "../store/store.ts";
import { newest, type Versioned } from "./newest.ts";
import { paginate, PagingError } from "../cache/paging.ts";
import { SelectorError } from "../request/selectors.ts";
import { sendStatus } from "../exchange/status.ts";
import { sendCached } from "./send.ts";
import { findInLists, findList, type ListedObject } from "./cached_lists.ts";
import type { HeldWatches } from "./held_watches.ts";
import { objectName } from "./object_name.ts";
import { offlineTable } from "./tables.ts";
import { isTokenRequest, stillValid } from "../cache/token_requests.ts";
import { parseRequestInfo } from "../request/request_info.ts";
import {
  discoveryPreferences,
  isAggregatedDiscovery,
  type Representation,
} from "../request/representation.ts";
import {
  convertDiscovery,
  discoveryContentType,
  isAggregatedRep,
  otherDiscoveryVersion,
} from "./discovery_versions.ts";

export interface OfflineDeps {
  cache: Cache;
  watches: HeldWatches;
  observe(ctx: RequestContext, status: number): void;
}

function hit(ctx: RequestContext, deps: OfflineDeps) {
  ctx.source = "cache";
  deps.observe(ctx, 200);
}

function unreachable(reason: string): string {
  return `the cloud kube-apiserver is unreachable (${reason})`;
}

function miss(ctx: RequestContext, deps: OfflineDeps, reason: string) {
  deps.observe(ctx, 503);
  sendStatus(ctx.res, 503, `${unreachable(reason)} and nothing is cached for this request`);
}

/** A cached answer to a read, ready to send. */
export interface CachedAnswer {
  body: Uint8Array;
  contentType: string;
}

/**
 * The cached answer to a GET or LIST (not a watch), if there is one: the exact entry, a list
 * derived from a broader one (selectors and paging applied), a derived Table, or an object found
 * in a cached list. Sends nothing. Throws PagingError or SelectorError for bad parameters.
 */
export async function cachedReadAnswer(ctx: RequestContext, cache: Cache): Promise<CachedAnswer | undefined> {
  if (!ctx.plan || ctx.info.verb === "watch") return undefined;
  const { verb } = ctx.info;
  if (ctx.info.isResourceRequest && verb === "list" && ctx.rep === "json") {
    const list = await findList(cache, ctx);
    if (!list) return undefined;
    const q = ctx.info.query;
    const page = paginate(list.items.map((b, i) => [list.itemKeys[i], b] as const), (t) => t[0], {
      limit: Number(q.get("limit") ?? "") || undefined,
      continue: q.get("continue") ?? undefined,
      listKeyId: list.id,
      resourceVersion: list.meta.resourceVersion,
    });
    const body = assembleList(list.meta.envelope, page.items.map((t) => t[1]), {
      resourceVersion: list.meta.resourceVersion,
      continue: page.continue,
      remainingItemCount: page.remainingItemCount,
    });
    return { body, contentType: list.meta.contentType };
  }
  if (!ctx.info.isResourceRequest && isAggregatedDiscovery(ctx.rep)) return await cachedDiscovery(ctx, cache);
  const cached = await cache.getObject(ctx.plan.key);
  if (ctx.info.isResourceRequest && verb === "get" && ctx.rep === "json" && !ctx.info.subresource) {
    return newestObject(cached, await findInLists(cache, ctx));
  }
  if (ctx.info.isResourceRequest && ctx.rep === "table" && !ctx.info.subresource) {
    const table = await offlineTable(cache, ctx, cached);
    if (table) return { body: table, contentType: "application/json" };
  }
  if (cached) return { body: cached.body, contentType: cached.contentType };
  return undefined;
}

/**
 * Discovery offline: the first representation the client's Accept lists (aggregated v2, v2beta1,
 * the legacy unaggregated document) that is cached, never one it did not list (client-go <= 1.29
 * reads a v2 document as "no resources"); failing that, an aggregated one the client lists made
 * from the other aggregated version that is cached (discovery_versions.ts).
 */
async function cachedDiscovery(ctx: RequestContext, cache: Cache): Promise<CachedAnswer | undefined> {
  const prefs = discoveryPreferences(String(ctx.req.headers.accept ?? ""));
  const get = (rep: Representation) => cache.getObject(cacheKeyFor(ctx.identity.cacheId, ctx.info, rep));
  for (const rep of prefs) {
    const cached = await get(rep);
    if (cached) return { body: cached.body, contentType: cached.contentType };
  }
  for (const rep of prefs) {
    if (!isAggregatedRep(rep)) continue;
    const from = otherDiscoveryVersion(rep);
    const cached = await get(from);
    const body = cached && convertDiscovery(cached.body, from, rep);
    if (body) return { body, contentType: discoveryContentType(rep) };
  }
  return undefined;
}

/** The newest of an object's cached GET answer and its copies in cached lists (newest.ts). */
function newestObject(cached: StoredObject | undefined, listed: ListedObject[]): CachedAnswer | undefined {
  const copies: Array<CachedAnswer & Versioned> = listed.map((l) => ({
    ...l,
    contentType: "application/json",
  }));
  if (cached) {
    let rv = "";
    try {
      rv = String(
        (parseJson(cached.body) as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion ??
          "",
      );
    } catch { /* not JSON: compared by write time */ }
    // First, so that it wins a tie (same version, same write time).
    copies.unshift({
      body: cached.body,
      contentType: cached.contentType,
      resourceVersion: rv,
      writtenAt: cached.storedAt,
    });
  }
  const best = newest(copies);
  return best && { body: best.body, contentType: best.contentType };
}

export async function serveOffline(ctx: RequestContext, deps: OfflineDeps, reason: string): Promise<void> {
  try {
    if (ctx.identity.kind === "uncertain") {
      deps.observe(ctx, 503);
      return sendStatus(
        ctx.res,
        503,
        `${unreachable(reason)}; this request's credentials cannot be classified (${ctx.identity.reason}), ` +
          "so it is never answered from the cache",
        { retryAfter: 1 },
      );
    }
    const method = ctx.req.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") return await offlineWrite(ctx, deps, reason);
    if (!ctx.plan) {
      deps.observe(ctx, 503);
      return sendStatus(
        ctx.res,
        503,
        `${
          unreachable(reason)
        }; this kind of request (${ctx.info.verb} ${ctx.info.path}) is not served from the cache`,
      );
    }
    if (ctx.info.verb === "watch") return await holdWatch(ctx, deps, reason);
    const answer = await cachedReadAnswer(ctx, deps.cache);
    if (!answer) return miss(ctx, deps, reason);
    hit(ctx, deps);
    return await sendCached(ctx, answer.body, answer.contentType);
  } catch (err) {
    if (err instanceof PagingError) {
      deps.observe(ctx, err.status);
      return sendStatus(ctx.res, err.status, err.message, { reason: err.reason });
    }
    if (err instanceof SelectorError) {
      deps.observe(ctx, 400);
      return sendStatus(ctx.res, 400, err.message);
    }
    throw err;
  }
}

async function holdWatch(ctx: RequestContext, deps: OfflineDeps, reason: string): Promise<void> {
  if (ctx.info.isResourceRequest && ctx.rep === "json") {
    const list = await findList(deps.cache, ctx);
    if (!list) return miss(ctx, deps, reason);
    hit(ctx, deps);
    return deps.watches.hold(ctx, list);
  }
  // Table watches (`kubectl get -w`): held open with no events (nothing to invent) from the
  // version of the cached Table the client listed (a cached Table, or one derived from JSON).
  const listCtx: RequestContext = { ...ctx, info: { ...ctx.info, verb: "list" } };
  const table = ctx.rep === "table" ? await cachedReadAnswer(listCtx, deps.cache) : undefined;
  if (!table) return miss(ctx, deps, reason);
  let resourceVersion = "";
  try {
    resourceVersion = String(
      (parseJson(table.body) as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion ?? "",
    );
  } catch { /* no version: held without one, ended when the cloud is back */ }
  hit(ctx, deps);
  deps.watches.hold(ctx, {
    meta: { envelope: "{}", resourceVersion, contentType: table.contentType, storedAt: Date.now() },
    items: [],
    itemKeys: [],
    id: "",
    derived: false,
  });
}

async function offlineWrite(ctx: RequestContext, deps: OfflineDeps, reason: string): Promise<void> {
  const { info } = ctx;
  if (ctx.plan && isTokenRequest(info)) {
    const cached = await deps.cache.getObject(ctx.plan.key);
    if (cached && stillValid(cached.body)) {
      ctx.source = "cache";
      deps.observe(ctx, 201);
      return await sendCached(ctx, cached.body, cached.contentType, 201);
    }
  }
  // kubelet re-registers its Node at start-up; after an offline reboot the cached Node answers.
  if (
    info.isResourceRequest && info.verb === "create" && info.group === "" && info.resource === "nodes" &&
    !info.subresource && ctx.body
  ) {
    const name = objectName(String(ctx.req.headers["content-type"] ?? ""), ctx.body);
    if (name) {
      const getInfo = parseRequestInfo("GET", `/api/v1/nodes/${encodeURIComponent(name)}`);
      const probe: RequestContext = { ...ctx, info: getInfo, rep: "json" };
      const known = await deps.cache.getObject(cacheKeyFor(ctx.identity.cacheId, getInfo, "json")) ??
        (await findInLists(deps.cache, probe))[0];
      if (known) {
        deps.observe(ctx, 409);
        return sendStatus(ctx.res, 409, `nodes "${name}" already exists`, {
          reason: "AlreadyExists",
          details: { name, kind: "nodes" },
        });
      }
    }
  }
  deps.observe(ctx, 503);
  sendStatus(ctx.res, 503, `${unreachable(reason)}; writes cannot be applied while offline`);
}
