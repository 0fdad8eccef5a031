/**
 * Removes cache entries nobody has refreshed for a configured age — only while online: offline,
 * the cache is the node's lifeline, however old it is.
 */
import type { Store } from "../store/store.ts";
import { log } from "../log.ts";

export class Evictor {
  #timer?: ReturnType<typeof setInterval>;
  evicted = 0;

  constructor(
    private readonly store: Store,
    private readonly maxAgeMs: number,
    private readonly online: () => boolean,
  ) {}

  /** One pass; returns how many entries were removed (0 when offline). */
  async runOnce(now = Date.now()): Promise<number> {
    if (!this.online()) return 0;
    try {
      const n = await this.store.evictOlderThan(now - this.maxAgeMs);
      if (n) log.info("evicted cache entries not refreshed recently", { entries: n });
      this.evicted += n;
      return n;
    } catch (err) {
      log.warn("eviction failed", { error: (err as Error).message }, "cache.eviction-failed");
      return 0;
    }
  }

  /** Runs a pass every tenth of the age, between one minute and one hour. */
  start(): void {
    const every = Math.min(3_600_000, Math.max(60_000, this.maxAgeMs / 10));
    this.#timer = setInterval(() => void this.runOnce(), every);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
