/**
 * Finds the cached answer to a collection request: the list cached for the same selectors, or
 * a broader cached list (whole namespace, all namespaces) filtered by the request's selectors.
 */
import type { Cache } from "../cache/cache.ts";
import type { RequestContext } from "../proxy/context.ts";
import { broaderListKeys, cacheKeyString, listKeyFor } from "../cache/cache_key.ts";
import { itemKind, parseJson } from "../cache/list_codec.ts";
import {
  matchFields,
  matchLabels,
  namedFieldSelector,
  parseFieldSelector,
  parseLabelSelector,
} from "../request/selectors.ts";
import type { ListMeta } from "../store/store.ts";

export interface FoundList {
  meta: ListMeta;
  items: Uint8Array[];
  itemKeys: string[];
  /** Names the list for continue tokens. */
  id: string;
  derived: boolean;
}

const dec = new TextDecoder();

export async function findList(cache: Cache, ctx: RequestContext): Promise<FoundList | undefined> {
  const key = listKeyFor(ctx.identity.cacheId, ctx.info, ctx.rep);
  const exact = await cache.getList(key);
  if (exact) {
    return {
      meta: exact.meta,
      items: exact.items,
      itemKeys: exact.itemKeys,
      id: cacheKeyString(key),
      derived: false,
    };
  }
  const info = ctx.info;
  const labels = parseLabelSelector(info.labelSelector);
  const fields = parseFieldSelector(namedFieldSelector(info.fieldSelector, info.name));
  const nsPrefix = info.namespace ? `${info.namespace}/` : "";
  for (const broader of broaderListKeys(ctx.identity.cacheId, info, ctx.rep)) {
    const list = await cache.getList(broader);
    if (!list) continue;
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
    return { meta: list.meta, items, itemKeys, id: cacheKeyString(key), derived: true };
  }
  return undefined;
}

/** Finds one object inside cached lists (for a GET whose own answer was never cached). */
export async function findInLists(cache: Cache, ctx: RequestContext): Promise<Uint8Array | undefined> {
  const info = {
    ...ctx.info,
    name: "",
    verb: "list",
    labelSelector: "",
    fieldSelector: "",
    query: new URLSearchParams(),
  };
  const own = listKeyFor(ctx.identity.cacheId, info, "json");
  const wanted = `${ctx.info.namespace}/${ctx.info.name}`;
  for (const key of [own, ...broaderListKeys(ctx.identity.cacheId, info, "json")]) {
    const list = await cache.getList(key);
    if (!list) continue;
    const i = binarySearch(list.itemKeys, wanted);
    if (i < 0) continue;
    const obj = parseJson(list.items[i]) as Record<string, unknown>;
    const { kind, apiVersion } = itemKind(list.meta.envelope);
    return new TextEncoder().encode(JSON.stringify({ kind, apiVersion, ...obj }));
  }
  return undefined;
}

function binarySearch(keys: string[], k: string): number {
  let lo = 0;
  let hi = keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] === k) return mid;
    if (keys[mid] < k) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
