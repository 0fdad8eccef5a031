/**
 * The persistent cache's storage seam. Two backends implement it: SQLite and flat files.
 *
 * Keys are structured so that the file backend can lay them out as a readable tree
 * (`<identity>/<resource>/<namespace>/<name>`). Every segment is already filesystem-safe:
 * non-empty, at most 200 bytes, characters from [A-Za-z0-9._:~%@+=,-] only, never "." or "..".
 */
export interface CacheKey {
  /** e.g. `cn~system:node:edge-1`, `token~3fa9…`, `anonymous`. */
  identity: string;
  /** e.g. `core~v1~pods`, `apps~v1~deployments`, `_discovery`. */
  resource: string;
  /** A namespace, or `_cluster` for cluster-scoped and all-namespace requests. */
  namespace: string;
  /** An object name (+ subresource, representation), or `_list~<selectors>~<representation>`. */
  name: string;
}

/** A cached response body, stored decoded (never gzip). */
export interface StoredObject {
  body: Uint8Array;
  contentType: string;
  /** Milliseconds since the epoch when this entry was last refreshed from the upstream. */
  storedAt: number;
}

/** What a cached list looks like without its items. */
export interface ListMeta {
  /** The list's JSON envelope without `items` (kind, apiVersion, metadata): a JSON string. */
  envelope: string;
  resourceVersion: string;
  contentType: string;
  storedAt: number;
}

export interface StoredList {
  meta: ListMeta;
  /** Item bodies ordered by item key (`namespace/name`), ascending (plain string order). */
  items: Uint8Array[];
  /** The item keys, parallel to `items` (added for paging without parsing items). */
  itemKeys: string[];
}

/** One write; a batch of them is applied in order. */
export type WriteOp =
  | { op: "putObject"; key: CacheKey; value: StoredObject }
  | { op: "deleteObject"; key: CacheKey }
  /** Removes a whole list (meta and items); no-op if absent. */
  | { op: "deleteList"; key: CacheKey }
  /** Replaces the whole list (meta and every item) atomically. */
  | { op: "replaceList"; key: CacheKey; meta: ListMeta; items: Array<[itemKey: string, body: Uint8Array]> }
  /** Inserts or replaces one item of an existing list and sets the list's resourceVersion. No-op if the list is absent. */
  | { op: "upsertItem"; key: CacheKey; itemKey: string; body: Uint8Array; resourceVersion: string }
  /** Removes one item of an existing list and sets the list's resourceVersion. No-op if the list is absent. */
  | { op: "deleteItem"; key: CacheKey; itemKey: string; resourceVersion: string }
  /** Sets the list's resourceVersion only (a BOOKMARK). No-op if the list is absent.
   * upsertItem, deleteItem and setListVersion also refresh the list's storedAt: a watched list is in use. */
  | { op: "setListVersion"; key: CacheKey; resourceVersion: string };

export interface EntryInfo {
  key: CacheKey;
  kind: "object" | "list";
  bytes: number;
  /** Number of items for a list, 1 for an object. */
  count: number;
  storedAt: number;
}

export interface Store {
  readonly backend: "sqlite" | "file";
  getObject(key: CacheKey): Promise<StoredObject | undefined>;
  getList(key: CacheKey): Promise<StoredList | undefined>;
  /** A list's meta alone (no items). */
  getListMeta(key: CacheKey): Promise<ListMeta | undefined>;
  /** One item of a list (by `namespace/name`) with the list's meta, without reading the others. */
  getListItem(key: CacheKey, itemKey: string): Promise<{ meta: ListMeta; body: Uint8Array } | undefined>;
  /**
   * Applies a batch in order. SQLite: one transaction, durable on return.
   * Files: each op is atomic and durable on return (temp file, fsync, rename, fsync dir).
   */
  apply(ops: WriteOp[]): Promise<void>;
  /** Every entry (objects and lists), optionally only those whose identity and resource match. */
  entries(filter?: { identity?: string; resource?: string }): Promise<EntryInfo[]>;
  /** Removes entries whose storedAt is older than the given time; returns how many were removed. */
  evictOlderThan(epochMs: number): Promise<number>;
  close(): Promise<void>;
}
