/**
 * Offline answers for `kubectl get` (server-side Tables, `as=Table`) that were never cached in
 * exactly that shape: rows of a broader cached Table filtered by the request's selectors, or a
 * Table built from cached JSON items (Name and Created At columns, as the apiserver does for
 * resources without printer columns).
 */
import type { Cache } from "../cache/cache.ts";
import type { RequestContext } from "../proxy/context.ts";
import { cacheKeyFor } from "../cache/cache_key.ts";
import { parseJson } from "../cache/list_codec.ts";
import {
  fieldSelectorIsMetadataOnly,
  matchFields,
  matchLabels,
  namedFieldSelector,
  parseFieldSelector,
  parseLabelSelector,
} from "../request/selectors.ts";
import type { RequestInfo } from "../request/request_info.ts";
import { findList } from "./cached_lists.ts";

type Obj = Record<string, unknown>;
interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  creationTimestamp?: string;
  resourceVersion?: string;
}
interface Row {
  cells: unknown[];
  object?: { metadata?: Meta };
}

const enc = new TextEncoder();

function withoutSelectors(info: RequestInfo, namespace: string): RequestInfo {
  const query = new URLSearchParams(info.query);
  query.delete("labelSelector");
  query.delete("fieldSelector");
  return { ...info, namespace, name: "", verb: "list", labelSelector: "", fieldSelector: "", query };
}

function selectors(info: RequestInfo) {
  return {
    labels: parseLabelSelector(info.labelSelector),
    fields: parseFieldSelector(namedFieldSelector(info.fieldSelector, info.name)),
  };
}

/** Full objects by `namespace/name`, from the identity's cached JSON lists (for field selectors). */
async function objectsByKey(cache: Cache, ctx: RequestContext): Promise<Map<string, Obj> | undefined> {
  for (const ns of ctx.info.namespace ? [ctx.info.namespace, ""] : [""]) {
    const probe: RequestContext = { ...ctx, rep: "json", info: withoutSelectors(ctx.info, ns) };
    const list = await findList(cache, probe);
    if (list) return new Map(list.itemKeys.map((k, i) => [k, parseJson(list.items[i]) as Obj]));
  }
  return undefined;
}

export async function derivedTable(cache: Cache, ctx: RequestContext): Promise<Uint8Array | undefined> {
  const { labels, fields } = selectors(ctx.info);
  const needObjects = !fieldSelectorIsMetadataOnly(fields);
  const objects = needObjects ? await objectsByKey(cache, ctx) : undefined;
  if (needObjects && !objects) return undefined;
  const keep = (meta: Meta | undefined, key: string) => {
    if (ctx.info.namespace && meta?.namespace !== ctx.info.namespace) return false;
    if (!matchLabels(labels, meta?.labels)) return false;
    const full = objects ? objects.get(key) : { metadata: meta };
    return !!full && matchFields(fields, full);
  };

  // 1. A broader cached Table: keep its columns and the rows that match.
  for (const ns of ctx.info.namespace ? [ctx.info.namespace, ""] : [""]) {
    const key = cacheKeyFor(ctx.identity.cacheId, withoutSelectors(ctx.info, ns), "table");
    const cached = await cache.getObject(key);
    if (!cached) continue;
    const table = parseJson(cached.body) as Obj & { rows?: Row[] };
    if (!Array.isArray(table.rows) || table.rows.some((r) => !r.object?.metadata)) continue;
    table.rows = table.rows.filter((r) => {
      const m = r.object!.metadata!;
      return keep(m, `${m.namespace ?? ""}/${m.name ?? ""}`);
    });
    return enc.encode(JSON.stringify(table));
  }

  // 2. Cached JSON items: a Table with the apiserver's default columns.
  const probe: RequestContext = { ...ctx, rep: "json", info: { ...ctx.info, verb: "list" } };
  const list = await findList(cache, probe);
  if (!list) return undefined;
  const rows: Row[] = list.items.map((body) => {
    const obj = parseJson(body) as Obj & { metadata?: Meta };
    const m = obj.metadata ?? {};
    return {
      cells: [m.name ?? "", m.creationTimestamp ?? ""],
      object: {
        kind: "PartialObjectMetadata",
        apiVersion: "meta.k8s.io/v1",
        metadata: m,
      } as unknown as Row["object"],
    };
  });
  return enc.encode(JSON.stringify({
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion: list.meta.resourceVersion },
    columnDefinitions: [
      { name: "Name", type: "string", format: "name", description: "Name of the object", priority: 0 },
      {
        name: "Created At",
        type: "date",
        format: "",
        description: "When the object was created",
        priority: 0,
      },
    ],
    rows,
  }));
}
