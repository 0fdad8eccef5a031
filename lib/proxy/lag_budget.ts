/**
 * The process-wide bound on bytes waiting for slow readers: every relay's queue together (issue 18,
 * issue 21). Each answer has its own bound (--watch-buffer-bytes, --answer-buffer-bytes), but a
 * client that opens many watches and reads none would hold its bound many times over (20 watches x
 * 4 MiB behind an HTTP/2 cloud: 80 MiB). Over this budget the largest queue, the client furthest
 * behind, meets its slow-reader policy at once (a watch is ended, the client re-watches; another
 * answer is cut), until the total is within the budget again. A client that lags a little never
 * pays for one that stopped.
 */

/** One relay's queue as the budget sees it. */
export interface Laggard {
  /** Bytes waiting in this relay's queue now. */
  readonly queued: number;
  /** Over budget and the largest: end or cut the answer, release its queue (and leave()). */
  evict(): void;
}

export class LagBudget {
  #members = new Set<Laggard>();
  #total = 0;
  #evicting = false;
  /** Answers evicted so far (for tests and metrics). */
  evictions = 0;

  constructor(readonly limit: number) {}

  /** Bytes waiting in all queues now. */
  get total(): number {
    return this.#total;
  }

  join(l: Laggard): void {
    this.#members.add(l);
  }

  leave(l: Laggard): void {
    this.#members.delete(l);
  }

  /** A queue grew (delta > 0) or shrank; over the limit, the largest queues are evicted. */
  adjust(delta: number): void {
    this.#total = Math.max(0, this.#total + delta);
    if (this.#evicting || this.#total <= this.limit) return;
    this.#evicting = true;
    try {
      while (this.#total > this.limit) {
        let worst: Laggard | undefined;
        for (const m of this.#members) if (!worst || m.queued > worst.queued) worst = m;
        if (!worst || worst.queued === 0) break;
        this.#members.delete(worst);
        this.evictions++;
        worst.evict();
      }
    } finally {
      this.#evicting = false;
    }
  }
}

/** Bytes all slow readers together may hold: 8 watches at the default 4 MiB bound. */
export const LAG_BUDGET_BYTES = 32 << 20;

/** The one budget of this process. */
export const lagBudget = new LagBudget(LAG_BUDGET_BYTES);
