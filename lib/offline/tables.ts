/**
 * Offline answers for `kubectl get` (server-side Tables, `as=Table`), kept coherent with the
 * freshest JSON data the cache holds for the identity: a cached Table (exact, or a broader one's
 * rows filtered by the request's selectors) is only as fresh as its last LIST, while watch events
 * keep the JSON lists current. When the JSON data is newer (newest.ts), the Table is rebuilt from
 * it: the cached Table's columns, a row per current object (no deleted rows, no missing added
 * ones), unchanged rows kept as the apiserver printed them, other cells computed by printers.ts
 * (else the resource's default columns, or Name and Created At). Ages are computed at answer time.
 */
import type { Cache } from "../cache/cache.ts";
import type { RequestContext } from "../exchange/context.ts";
import type { StoredObject } from "../store/store.ts";
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
import { findList, type FoundList } from "./cached_lists.ts";
import { newest } from "./newest.ts";
import { cellsFor, type ColumnDefinition, defaultColumns, since } from "./printers.ts";

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
interface Table extends Obj {
  metadata?: { resourceVersion?: string };
  columnDefinitions?: ColumnDefinition[];
  rows?: Row[];
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

/** The request as a JSON list of the same objects (a named request: `metadata.name=<name>`). */
function jsonProbe(ctx: RequestContext): RequestContext {
  const info = ctx.info;
  return {
    ...ctx,
    rep: "json",
    info: {
      ...info,
      verb: "list",
      name: "",
      fieldSelector: namedFieldSelector(info.fieldSelector, info.name),
    },
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

const rowKey = (m: Meta | undefined) => `${m?.namespace ?? ""}/${m?.name ?? ""}`;

/** A broader cached Table's rows that match the request, or undefined. */
async function broaderTable(
  cache: Cache,
  ctx: RequestContext,
): Promise<{ table: Table; storedAt: number } | undefined> {
  const { labels, fields } = selectors(ctx.info);
  const needObjects = !fieldSelectorIsMetadataOnly(fields);
  const objects = needObjects ? await objectsByKey(cache, ctx) : undefined;
  if (needObjects && !objects) return undefined;
  const keep = (meta: Meta | undefined) => {
    if (ctx.info.namespace && meta?.namespace !== ctx.info.namespace) return false;
    if (!matchLabels(labels, meta?.labels)) return false;
    const full = objects ? objects.get(rowKey(meta)) : { metadata: meta };
    return !!full && matchFields(fields, full);
  };
  for (const ns of ctx.info.namespace ? [ctx.info.namespace, ""] : [""]) {
    const key = cacheKeyFor(ctx.identity.cacheId, withoutSelectors(ctx.info, ns), "table");
    const cached = await cache.getObject(key);
    if (!cached) continue;
    const table = parseJson(cached.body) as Table;
    if (!Array.isArray(table.rows) || table.rows.some((r) => !r.object?.metadata)) continue;
    table.rows = table.rows.filter((r) => keep(r.object!.metadata));
    return { table, storedAt: cached.storedAt };
  }
  return undefined;
}

/** The row's object as `includeObject` asks: Metadata (the default), Object or None. */
function rowObject(obj: Obj, includeObject: string): Row["object"] | undefined {
  if (includeObject === "None") return undefined;
  if (includeObject === "Object") return obj as Row["object"];
  return {
    kind: "PartialObjectMetadata",
    apiVersion: "meta.k8s.io/v1",
    metadata: obj.metadata,
  } as Row["object"];
}

/** Rebuilds `base`'s Table (or a default one) from the current JSON objects. */
function fromJson(ctx: RequestContext, json: FoundList, base: Table | undefined, now: number): Table {
  const { group, resource } = ctx.info;
  const objects = json.items.map((b) => parseJson(b) as Obj & { metadata?: Meta });
  const old = new Map((base?.rows ?? []).map((r) => [rowKey(r.object?.metadata), r]));
  let columns = base?.columnDefinitions ?? defaultColumns(group, resource);
  let cells = cellsFor(group, resource, columns);
  const ageAt = columns.findIndex((c) => c.name === "Age");
  const unchanged = (o: { metadata?: Meta }) => {
    const r = old.get(rowKey(o.metadata));
    return r && r.object?.metadata?.resourceVersion === o.metadata?.resourceVersion ? r : undefined;
  };
  // Columns that cannot be derived (custom printer columns): only if every row is unchanged.
  if (!cells && !objects.every(unchanged)) {
    columns = defaultColumns(group, resource);
    cells = cellsFor(group, resource, columns)!;
  }
  const includeObject = ctx.info.query.get("includeObject") ?? "Metadata";
  const rows = objects.map((o): Row => {
    const keep = columns === base?.columnDefinitions ? unchanged(o) : undefined;
    const row: Row = { cells: keep ? [...keep.cells] : cells!(o, now) };
    if (keep && ageAt >= 0) row.cells[ageAt] = since(o.metadata?.creationTimestamp, now);
    const object = rowObject(o, includeObject);
    if (object) row.object = object;
    return row;
  });
  return {
    kind: "Table",
    apiVersion: base?.apiVersion ?? "meta.k8s.io/v1",
    metadata: { resourceVersion: json.meta.resourceVersion },
    columnDefinitions: columns,
    rows,
  };
}

/** A cached Table as it is, with its Age cells computed now. */
function withAges(table: Table, now: number): Table {
  const ageAt = (table.columnDefinitions ?? []).findIndex((c) => c.name === "Age");
  if (ageAt < 0) return table;
  for (const r of table.rows ?? []) {
    const ts = r.object?.metadata?.creationTimestamp;
    if (ts && r.cells.length > ageAt) r.cells[ageAt] = since(ts, now);
  }
  return table;
}

/**
 * The offline Table for a `kubectl get` request: `cached` is the Table cached for exactly this
 * request, if any. undefined when the cache holds neither a Table nor JSON data for it.
 */
export async function offlineTable(
  cache: Cache,
  ctx: RequestContext,
  cached?: StoredObject,
): Promise<Uint8Array | undefined> {
  const now = Date.now();
  const base = cached
    ? { table: parseJson(cached.body) as Table, storedAt: cached.storedAt }
    : ctx.info.name
    ? undefined
    : await broaderTable(cache, ctx);
  const json = await findList(cache, jsonProbe(ctx));
  if (!json) return base && enc.encode(JSON.stringify(withAges(base.table, now)));
  if (base) {
    const tableCopy = {
      resourceVersion: base.table.metadata?.resourceVersion ?? "",
      writtenAt: base.storedAt,
    };
    const jsonCopy = { resourceVersion: json.meta.resourceVersion, writtenAt: json.meta.storedAt };
    // The Table when it is at least as new as the JSON data: it is what the apiserver printed.
    if (newest([tableCopy, jsonCopy]) === tableCopy) {
      return enc.encode(JSON.stringify(withAges(base.table, now)));
    }
  }
  // A named request for an object the newer JSON data no longer holds: not answered from the cache.
  if (ctx.info.name && json.items.length === 0) return undefined;
  return enc.encode(JSON.stringify(fromJson(ctx, json, base?.table, now)));
}
