/**
 * The cache: turns upstream answers into store writes (through the write queue) and reads them
 * back. Lists are itemised; paged lists are assembled across pages before they replace the old
 * list; watch events patch the same identity's list for the same selectors, one item per event.
 */
import type { CacheKey, ListMeta, Store, StoredList, StoredObject, WriteOp } from "../store/store.ts";
import type { WriteQueue } from "./write_queue.ts";
import { itemKeyOf, metaOf, splitList } from "./list_codec.ts";
import { cacheKeyString } from "./cache_key.ts";
import { log } from "../log.ts";
import type { InitialSnapshot } from "./initial_events.ts";
import type { WatchEvent } from "./watch_event.ts";
import { hash } from "node:crypto";
import { CacheBudget } from "./cache_budget.ts";
import { type CacheBounds, DEFAULT_BOUNDS } from "../config/cache_bounds.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
/** An unchanged object is re-written (its stored time refreshed) at most this often. */
const REFRESH_MS = 10 * 60_000;
const MAX_REMEMBERED = 100_000;

export interface CacheLimits {
  /** A watch event (one line) larger than this stops the caching of that watch. */
  maxWatchEventBytes: number;
  bounds: CacheBounds;
}

export const DEFAULT_LIMITS: CacheLimits = { maxWatchEventBytes: 8 << 20, bounds: DEFAULT_BOUNDS };

interface PendingPages {
  envelope: string;
  resourceVersion: string;
  items: Array<[string, Uint8Array]>;
  expectContinue: string;
  startedAt: number;
}

export class Cache {
  readonly store: Store;
  readonly queue: WriteQueue;
  #pages = new Map<string, PendingPages>();
  #written = new Map<string, { digest: string; at: number }>();
  readonly limits: CacheLimits;
  readonly budget: CacheBudget;
  recorded = 0;
  skipped = 0;
  /** Answers refused because they are not whole, valid JSON. */
  invalid = 0;

  constructor(store: Store, queue: WriteQueue, limits: Partial<CacheLimits> = {}) {
    this.store = store;
    this.queue = queue;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.budget = new CacheBudget(store, this.limits.bounds, (op) => {
      this.#written.delete(cacheKeyString(op.key)); // evicted: the next identical answer is written
      return queue.push(op);
    });
  }

  /** Queues a write within the cache's bounds; false when it is not cached. */
  #push(op: WriteOp): boolean {
    if (!this.budget.admits(op)) {
      log.debug("answer larger than the cache bound: not cached");
      return false;
    }
    const queued = this.queue.push(op);
    if (queued) this.budget.recorded(op);
    return queued;
  }

  /**
   * Records an object. An answer identical to the one last written is not written again unless
   * its stored time is getting old: hot GETs (kubelet reads its Node and Lease constantly) cost
   * no disk writes.
   */
  recordObject(key: CacheKey, body: Uint8Array, contentType: string): void {
    this.recorded++;
    const id = cacheKeyString(key);
    // One-shot hash(): no Hash stream object per GET (~5 µs for a 1.6 KB pod either way; a JS
    // 53-bit hash measured no faster and could be steered into collisions by an object's writer).
    const digest = hash("sha1", body, "base64");
    const now = Date.now();
    const last = this.#written.get(id);
    if (last && last.digest === digest && now - last.at < REFRESH_MS) {
      this.skipped++;
      this.budget.touch(key, now);
      return;
    }
    // Only whole, valid JSON is cached (a torn or garbled 200 is relayed, never stored).
    if (!isJson(body)) {
      this.invalid++;
      return log.debug("answer is not valid JSON: not cached");
    }
    if (this.#written.size >= MAX_REMEMBERED) this.#written.clear();
    this.#written.set(id, { digest, at: now });
    this.#push({ op: "putObject", key, value: { body, contentType, storedAt: now } });
  }

  /**
   * Records one page of a JSON list. `requestContinue` is the continue token the client sent
   * ("" for a first page). Only a complete list (the last page of a chain) replaces the cache.
   */
  recordListPage(key: CacheKey, body: Uint8Array, contentType: string, requestContinue: string): void {
    const list = splitList(body);
    if (!list) {
      this.invalid++;
      return log.debug("list answer is not a valid list of named objects: not cached");
    }
    const id = cacheKeyString(key);
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
    this.#push({
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

  /**
   * Replaces the list under `key` with a watch-list's initial events (initial_events.ts): one
   * write, so a reader sees the old list or the new one, never a mix.
   */
  recordListSnapshot(key: CacheKey, snapshot: InitialSnapshot): void {
    this.recorded++;
    this.#pages.delete(cacheKeyString(key));
    this.#push({
      op: "replaceList",
      key,
      meta: {
        envelope: snapshot.envelope,
        resourceVersion: snapshot.resourceVersion,
        contentType: "application/json",
        storedAt: Date.now(),
      },
      items: snapshot.items,
    });
  }

  /** Applies one watch event to the cached list under `key`. */
  recordWatchEvent(key: CacheKey, ev: WatchEvent): void {
    const rv = ev.resourceVersion ?? String(metaOf(ev.object).resourceVersion ?? "");
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED":
        this.#push({
          op: "upsertItem",
          key,
          itemKey: ev.itemKey ?? itemKeyOf(ev.object),
          body: ev.raw ?? enc.encode(JSON.stringify(ev.object)),
          resourceVersion: rv,
        });
        break;
      case "DELETED":
        this.#push({
          op: "deleteItem",
          key,
          itemKey: ev.itemKey ?? itemKeyOf(ev.object),
          resourceVersion: rv,
        });
        break;
      case "BOOKMARK":
        if (rv) this.#push({ op: "setListVersion", key, resourceVersion: rv });
        break;
      default:
        log.debug("watch event not cached", { type: ev.type });
    }
  }

  /** Reads wait briefly for queued writes so an answer reflects what was just recorded. */
  async getObject(key: CacheKey): Promise<StoredObject | undefined> {
    await this.queue.idle(1000);
    const found = await this.store.getObject(key);
    if (found) this.budget.touch(key);
    return found;
  }

  async getList(key: CacheKey): Promise<StoredList | undefined> {
    await this.queue.idle(1000);
    const found = await this.store.getList(key);
    if (found) this.budget.touch(key);
    return found;
  }

  async getListMeta(key: CacheKey): Promise<ListMeta | undefined> {
    await this.queue.idle(1000);
    return this.store.getListMeta(key);
  }

  /** One item of a cached list, without reading the others (an offline GET). */
  async getListItem(
    key: CacheKey,
    itemKey: string,
  ): Promise<{ meta: ListMeta; body: Uint8Array } | undefined> {
    await this.queue.idle(1000);
    const found = await this.store.getListItem(key, itemKey);
    if (found) this.budget.touch(key);
    return found;
  }
}

function isJson(body: Uint8Array): boolean {
  try {
    JSON.parse(dec.decode(body));
    return true;
  } catch {
    return false;
  }
}
