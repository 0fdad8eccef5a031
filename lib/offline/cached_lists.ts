/**
 * Finds the cached answer to a collection request: the list cached for the same selectors, or
 * a broader cached list (whole namespace, all namespaces) filtered by the request's selectors.
 */
import type { Cache } from "../cache/cache.ts";
import type { RequestContext } from "../exchange/context.ts";
import { broaderListKeys, cacheKeyString, listKeyFor } from "../cache/cache_key.ts";
import { itemKind, parseJson } from "../cache/list_codec.ts";
import {
  matchFields,
  matchLabels,
  namedFieldSelector,
  parseFieldSelector,
  parseLabelSelector,
} from "../request/selectors.ts";
import type { CacheKey, ListMeta } from "../store/store.ts";
import { newest } from "./newest.ts";

export interface FoundList {
  meta: ListMeta;
  items: Uint8Array[];
  itemKeys: string[];
  /** Names the list for continue tokens. */
  id: string;
  derived: boolean;
}

const dec = new TextDecoder();

/**
 * The cached answer to a collection request: among the list cached for the same selectors and the
 * broader cached lists (filtered by the request's selectors and namespace), the newest (see
 * newest.ts), so a list kept current by a watch beats an older relist of a narrower shape.
 */
export async function findList(cache: Cache, ctx: RequestContext): Promise<FoundList | undefined> {
  const key = listKeyFor(ctx.identity.cacheId, ctx.info, ctx.rep);
  const id = cacheKeyString(key);
  const info = ctx.info;
  // Metas first: only the newest list's items are read.
  const candidates: Array<{ key: CacheKey; resourceVersion: string; writtenAt: number }> = [];
  for (const k of [key, ...broaderListKeys(ctx.identity.cacheId, info, ctx.rep)]) {
    const meta = await cache.getListMeta(k);
    if (meta) candidates.push({ key: k, resourceVersion: meta.resourceVersion, writtenAt: meta.storedAt });
  }
  const best = newest(candidates);
  const list = best && await cache.getList(best.key);
  if (!best || !list) return undefined;
  if (best.key === key) {
    return { meta: list.meta, items: list.items, itemKeys: list.itemKeys, id, derived: false };
  }
  const labels = parseLabelSelector(info.labelSelector);
  const fields = parseFieldSelector(namedFieldSelector(info.fieldSelector, info.name));
  const nsPrefix = info.namespace ? `${info.namespace}/` : "";
  const items: Uint8Array[] = [];
  const itemKeys: string[] = [];
  list.items.forEach((body, i) => {
    const k = list.itemKeys[i];
    if (nsPrefix && !k.startsWith(nsPrefix)) return;
    const obj = JSON.parse(dec.decode(body)) as { metadata?: { labels?: Record<string, string> } };
    if (!matchLabels(labels, obj.metadata?.labels) || !matchFields(fields, obj)) return;
    items.push(body);
    itemKeys.push(k);
  });
  return { meta: list.meta, items, itemKeys, id, derived: true };
}

/** kind and apiVersion of a collection request's items, from the envelope of a cached list. */
export async function listedKind(
  cache: Cache,
  ctx: RequestContext,
): Promise<{ kind: string; apiVersion: string } | undefined> {
  if (ctx.rep !== "json") return undefined;
  const key = listKeyFor(ctx.identity.cacheId, ctx.info, "json");
  for (const k of [key, ...broaderListKeys(ctx.identity.cacheId, ctx.info, "json")]) {
    const meta = await cache.getListMeta(k);
    if (meta) return itemKind(meta.envelope);
  }
  return undefined;
}

/** One object as an item of a cached list, with the list's write time. */
export interface ListedObject {
  body: Uint8Array;
  resourceVersion: string;
  writtenAt: number;
}

/**
 * The copies of one object (a GET's target) held as items of the identity's cached JSON lists:
 * the namespace's and all namespaces' lists without selectors, and the list of a watch or
 * informer on that one name (`metadata.name=<name>`). Each body is a whole object (kind and
 * apiVersion added from the list).
 */
export async function findInLists(cache: Cache, ctx: RequestContext): Promise<ListedObject[]> {
  const info = {
    ...ctx.info,
    name: "",
    verb: "list",
    labelSelector: "",
    fieldSelector: "",
    query: new URLSearchParams(),
  };
  const id = ctx.identity.cacheId;
  const own = listKeyFor(id, info, "json");
  const named = listKeyFor(id, { ...info, fieldSelector: namedFieldSelector("", ctx.info.name) }, "json");
  const wanted = `${ctx.info.namespace}/${ctx.info.name}`;
  const found: ListedObject[] = [];
  for (const key of [own, ...broaderListKeys(id, info, "json"), named]) {
    const item = await cache.getListItem(key, wanted);
    if (!item) continue;
    const obj = parseJson(item.body) as { metadata?: { resourceVersion?: unknown } };
    const { kind, apiVersion } = itemKind(item.meta.envelope);
    found.push({
      body: new TextEncoder().encode(JSON.stringify({ kind, apiVersion, ...obj })),
      resourceVersion: String(obj.metadata?.resourceVersion ?? ""),
      writtenAt: item.meta.storedAt,
    });
  }
  return found;
}
