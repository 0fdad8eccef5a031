/**
 * The cache: turns upstream answers into store writes (through the write queue) and reads them
 * back. Lists are itemised; paged lists are assembled across pages before they replace the old
 * list; watch events patch the same identity's list for the same selectors, one item per event.
 */
import type { CacheKey, ListMeta, Store, StoredList, StoredObject } from "../store/store.ts";
import type { WriteQueue } from "./write_queue.ts";
import { itemKeyOf, metaOf, splitList } from "./list_codec.ts";
import { log } from "../log.ts";
import { createHash } from "node:crypto";

const enc = new TextEncoder();
/** An unchanged object is re-written (its stored time refreshed) at most this often. */
const REFRESH_MS = 10 * 60_000;
const MAX_REMEMBERED = 100_000;

export function keyString(k: CacheKey): string {
  return `${k.identity}/${k.resource}/${k.namespace}/${k.name}`;
}

interface PendingPages {
  envelope: string;
  resourceVersion: string;
  items: Array<[string, Uint8Array]>;
  expectContinue: string;
  startedAt: number;
}

export interface WatchEvent {
  type: string;
  object: unknown;
  /** The object's JSON exactly as received, when known (saves serialising it again). */
  raw?: Uint8Array;
  /** `namespace/name` and resourceVersion, when read without parsing the object. */
  itemKey?: string;
  resourceVersion?: string;
}

export class Cache {
  readonly store: Store;
  readonly queue: WriteQueue;
  #pages = new Map<string, PendingPages>();
  #written = new Map<string, { digest: string; at: number }>();
  recorded = 0;
  skipped = 0;

  constructor(store: Store, queue: WriteQueue) {
    this.store = store;
    this.queue = queue;
  }

  /**
   * Records an object. An answer identical to the one last written is not written again unless
   * its stored time is getting old: hot GETs (kubelet reads its Node and Lease constantly) cost
   * no disk writes.
   */
  recordObject(key: CacheKey, body: Uint8Array, contentType: string): void {
    this.recorded++;
    const id = keyString(key);
    const digest = createHash("sha1").update(body).digest("base64");
    const now = Date.now();
    const last = this.#written.get(id);
    if (last && last.digest === digest && now - last.at < REFRESH_MS) {
      this.skipped++;
      return;
    }
    if (this.#written.size >= MAX_REMEMBERED) this.#written.clear();
    this.#written.set(id, { digest, at: now });
    this.queue.push({ op: "putObject", key, value: { body, contentType, storedAt: now } });
  }

  /**
   * Records one page of a JSON list. `requestContinue` is the continue token the client sent
   * ("" for a first page). Only a complete list (the last page of a chain) replaces the cache.
   */
  recordListPage(key: CacheKey, body: Uint8Array, contentType: string, requestContinue: string): void {
    const list = splitList(body);
    if (!list) return;
    const id = keyString(key);
    let pending: PendingPages | undefined;
    if (requestContinue) {
      pending = this.#pages.get(id);
      if (!pending || pending.expectContinue !== requestContinue) return; // a chain we did not see start
      pending.items.push(...list.items);
    } else {
      pending = {
        envelope: list.envelope,
        resourceVersion: list.resourceVersion,
        items: list.items,
        expectContinue: "",
        startedAt: Date.now(),
      };
    }
    if (list.continueToken) {
      pending.expectContinue = list.continueToken;
      this.#pages.set(id, pending);
      this.#gcPages();
      return;
    }
    this.#pages.delete(id);
    if (requestContinue) pending.items.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const envelope = JSON.parse(pending.envelope);
    if (envelope.metadata) {
      delete envelope.metadata.continue;
      delete envelope.metadata.remainingItemCount;
    }
    this.recorded++;
    this.queue.push({
      op: "replaceList",
      key,
      meta: {
        envelope: JSON.stringify(envelope),
        resourceVersion: pending.resourceVersion,
        contentType,
        storedAt: Date.now(),
      },
      items: pending.items,
    });
  }

  #gcPages() {
    const cutoff = Date.now() - 5 * 60_000;
    for (const [id, p] of this.#pages) if (p.startedAt < cutoff) this.#pages.delete(id);
  }

  /** Applies one watch event to the cached list under `key`. */
  recordWatchEvent(key: CacheKey, ev: WatchEvent): void {
    const rv = ev.resourceVersion ?? String(metaOf(ev.object).resourceVersion ?? "");
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED":
        this.queue.push({
          op: "upsertItem",
          key,
          itemKey: ev.itemKey ?? itemKeyOf(ev.object),
          body: ev.raw ?? enc.encode(JSON.stringify(ev.object)),
          resourceVersion: rv,
        });
        break;
      case "DELETED":
        this.queue.push({
          op: "deleteItem",
          key,
          itemKey: ev.itemKey ?? itemKeyOf(ev.object),
          resourceVersion: rv,
        });
        break;
      case "BOOKMARK":
        if (rv) this.queue.push({ op: "setListVersion", key, resourceVersion: rv });
        break;
      default:
        log.debug("watch event not cached", { type: ev.type });
    }
  }

  /** Reads wait briefly for queued writes so an answer reflects what was just recorded. */
  async getObject(key: CacheKey): Promise<StoredObject | undefined> {
    await this.queue.idle(1000);
    return this.store.getObject(key);
  }

  async getList(key: CacheKey): Promise<StoredList | undefined> {
    await this.queue.idle(1000);
    return this.store.getList(key);
  }

  async getListMeta(key: CacheKey): Promise<ListMeta | undefined> {
    await this.queue.idle(1000);
    return this.store.getListMeta(key);
  }

  async getListItem(
    key: CacheKey,
    itemKey: string,
  ): Promise<{ meta: ListMeta; body: Uint8Array } | undefined> {
    await this.queue.idle(1000);
    return this.store.getListItem(key, itemKey);
  }
}
