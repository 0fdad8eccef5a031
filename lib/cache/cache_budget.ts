/**
 * Bounds the cache per identity and overall (bytes and entries). When a write takes an identity
 * over its bound, or the whole cache over the overall bound, the least recently used entries *of
 * that identity* are dropped: one caller's flood never evicts another caller's data. Enforced
 * online and offline alike, and at start-up (bounds may have been lowered).
 *
 * Usage is tracked in memory per entry; list patches (watch events) only add, so an identity whose
 * estimate crosses a bound is first measured exactly from the store (at most once a second), and
 * only then trimmed.
 */
import type { CacheKey, Store, WriteOp } from "../store/store.ts";
import { cacheKeyString } from "./cache_key.ts";
import { opBytes } from "./write_queue.ts";
import { log } from "../log.ts";
import type { CacheBounds } from "../config/cache_bounds.ts";

interface Entry {
  key: CacheKey;
  kind: "object" | "list";
  bytes: number;
  usedAt: number;
}

interface Usage {
  entries: Map<string, Entry>;
  bytes: number;
  measuredAt: number;
}

/** Trimming goes a little below the bound, so that one more write does not trim again. */
const TRIM_TO = 0.9;
const MEASURE_EVERY_MS = 1000;

export class CacheBudget {
  #ids = new Map<string, Usage>();
  #bytes = 0;
  #entries = 0;
  evicted = 0;

  constructor(
    private readonly store: Pick<Store, "entries">,
    private readonly bounds: CacheBounds,
    /** Queues the deletes (the cache's write queue). */
    private readonly push: (op: WriteOp) => boolean,
  ) {}

  /** Reads what the store holds, then trims every identity over a bound. */
  async load(now = Date.now()): Promise<void> {
    for (const e of await this.store.entries()) {
      this.#set(e.key, e.kind, e.bytes, e.storedAt);
    }
    // Lowered bounds: the largest identities pay first for an overall excess.
    const biggest = [...this.#ids.entries()].sort((a, b) => b[1].bytes - a[1].bytes);
    for (const [id, u] of biggest) {
      u.measuredAt = now;
      this.#trim(id);
    }
  }

  /** Whether a single write is small enough to be cached at all. */
  admits(op: WriteOp): boolean {
    const size = opBytes(op);
    return size <= this.bounds.perIdentity.bytes && size <= this.bounds.total.bytes;
  }

  /** Accounts a queued write and trims its identity if a bound is now exceeded. */
  recorded(op: WriteOp, now = Date.now()): void {
    switch (op.op) {
      case "putObject":
        this.#set(op.key, "object", op.value.body.byteLength, now);
        break;
      case "replaceList":
        this.#set(op.key, "list", opBytes(op), now);
        break;
      case "upsertItem": {
        const e = this.#ids.get(op.key.identity)?.entries.get(cacheKeyString(op.key));
        if (!e) return; // The store ignores a patch of an absent list.
        this.#resize(op.key.identity, e, e.bytes + op.body.byteLength, now);
        break;
      }
      case "deleteItem":
      case "setListVersion": {
        const e = this.#ids.get(op.key.identity)?.entries.get(cacheKeyString(op.key));
        if (e) e.usedAt = now;
        return;
      }
      default:
        return;
    }
    if (this.#over(op.key.identity)) void this.#measureAndTrim(op.key.identity);
  }

  /** A read served from this entry: it is recently used. */
  touch(key: CacheKey, now = Date.now()): void {
    const e = this.#ids.get(key.identity)?.entries.get(cacheKeyString(key));
    if (e) e.usedAt = Math.max(e.usedAt, now);
  }

  /** Bytes and entries of one identity (as tracked), or of all. */
  usage(identity?: string): { bytes: number; entries: number } {
    if (identity === undefined) return { bytes: this.#bytes, entries: this.#entries };
    const u = this.#ids.get(identity);
    return { bytes: u?.bytes ?? 0, entries: u?.entries.size ?? 0 };
  }

  #set(key: CacheKey, kind: "object" | "list", bytes: number, usedAt: number): void {
    let u = this.#ids.get(key.identity);
    if (!u) this.#ids.set(key.identity, u = { entries: new Map(), bytes: 0, measuredAt: 0 });
    const id = cacheKeyString(key);
    const e = u.entries.get(id);
    if (e) return this.#resize(key.identity, e, bytes, Math.max(e.usedAt, usedAt), kind);
    u.entries.set(id, { key, kind, bytes, usedAt });
    u.bytes += bytes;
    this.#bytes += bytes;
    this.#entries++;
  }

  #resize(identity: string, e: Entry, bytes: number, usedAt: number, kind = e.kind): void {
    const u = this.#ids.get(identity)!;
    u.bytes += bytes - e.bytes;
    this.#bytes += bytes - e.bytes;
    e.bytes = bytes;
    e.usedAt = usedAt;
    e.kind = kind;
  }

  #over(identity: string): boolean {
    const u = this.#ids.get(identity);
    if (!u) return false;
    const { perIdentity: p, total: t } = this.bounds;
    return u.bytes > p.bytes || u.entries.size > p.entries || this.#bytes > t.bytes ||
      this.#entries > t.entries;
  }

  /** Patched lists are over-estimated: measure the identity exactly before dropping anything. */
  async #measureAndTrim(identity: string): Promise<void> {
    const u = this.#ids.get(identity)!;
    const overEntries = u.entries.size > this.bounds.perIdentity.entries ||
      this.#entries > this.bounds.total.entries;
    if (!overEntries && Date.now() - u.measuredAt >= MEASURE_EVERY_MS) {
      u.measuredAt = Date.now();
      try {
        for (const e of await this.store.entries({ identity })) {
          const known = u.entries.get(cacheKeyString(e.key));
          if (known && known.kind === "list") this.#resize(identity, known, e.bytes, known.usedAt);
        }
      } catch (err) {
        log.warn("cannot measure cache usage", { error: (err as Error).message });
      }
    }
    this.#trim(identity);
  }

  /** Drops the identity's least recently used entries until it and the total are within bounds. */
  #trim(identity: string): void {
    const u = this.#ids.get(identity);
    if (!u || !this.#over(identity)) return;
    const { perIdentity: p, total: t } = this.bounds;
    // Over its own bound: down to a little below it. Over the overall bound only: just below that.
    const ownBytes = u.bytes > p.bytes ? p.bytes * TRIM_TO : p.bytes;
    const ownEntries = u.entries.size > p.entries ? Math.floor(p.entries * TRIM_TO) : p.entries;
    const within = () =>
      u.bytes <= ownBytes && u.entries.size <= ownEntries && this.#bytes <= t.bytes &&
      this.#entries <= t.entries;
    const lru = [...u.entries.entries()].sort((a, b) => a[1].usedAt - b[1].usedAt);
    let dropped = 0;
    for (const [id, e] of lru) {
      if (within()) break;
      this.push(e.kind === "object" ? { op: "deleteObject", key: e.key } : { op: "deleteList", key: e.key });
      u.entries.delete(id);
      u.bytes -= e.bytes;
      this.#bytes -= e.bytes;
      this.#entries--;
      dropped++;
    }
    this.evicted += dropped;
    if (dropped) {
      log.info("cache bound reached: dropped this identity's least recently used entries", {
        entries: dropped,
        identityBytes: u.bytes,
        identityEntries: u.entries.size,
      });
    }
  }
}
