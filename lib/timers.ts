/**
 * One timer service per server: periodic sweeps (deadlines of served connections, of requests in
 * flight, idle upstream connections) share one timer that wakes at the next sweep due. A sweep
 * checks many deadlines at once rather than a timer per request: creating and clearing a timer per
 * request was a measurable share of the proxy's CPU. No module state: each server makes its own
 * (lib/server.ts) and passes it down, so one server's settings never change another's sweeps.
 */

/** A periodic check, run every `periodMs` from when it is started until `run` returns false. */
export interface Sweep {
  readonly periodMs: number;
  /** Whether a pending run keeps the process alive (idle upstream connections must not). */
  readonly keepAlive: boolean;
  /** Returns whether there is still something to check (false: the sweep stops until started again). */
  run(now: number): boolean;
}

export class Timers {
  /** Started sweeps and when each is next due (performance.now()). */
  #due = new Map<Sweep, number>();
  #timer?: ReturnType<typeof setTimeout>;
  #timerAt = Infinity;
  #closed = false;

  /** Starts a sweep (no-op if it runs already): its first run is one period from now. */
  start(sweep: Sweep): void {
    if (this.#closed || this.#due.has(sweep)) return;
    this.#due.set(sweep, performance.now() + sweep.periodMs);
    this.#schedule();
  }

  /** Stops a sweep. */
  stop(sweep: Sweep): void {
    if (this.#due.delete(sweep)) this.#schedule();
  }

  /** Sweeps running now (for tests). */
  get running(): number {
    return this.#due.size;
  }

  /** Stops every sweep; later starts do nothing. */
  close(): void {
    this.#closed = true;
    this.#due.clear();
    this.#schedule();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    for (const [sweep, at] of [...this.#due]) {
      // Timers round their delay: a sweep due within a millisecond runs now rather than after another wake-up.
      if (at > now + 1 || !this.#due.has(sweep)) continue;
      if (sweep.run(now) && this.#due.has(sweep)) this.#due.set(sweep, now + sweep.periodMs);
      else this.#due.delete(sweep);
    }
    this.#schedule();
  }

  /** One timer, set for the earliest sweep due; kept alive only for sweeps that keep the process alive. */
  #schedule(): void {
    let next = Infinity;
    let keepAlive = false;
    for (const [sweep, at] of this.#due) {
      next = Math.min(next, at);
      keepAlive ||= sweep.keepAlive;
    }
    if (this.#timer !== undefined && this.#timerAt <= next) {
      if (next === Infinity) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#timerAt = Infinity;
      } else this.#ref(keepAlive);
      return;
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (next === Infinity) return;
    // Whole milliseconds, rounded up: a fractional delay may be cut short and wake us before anything is due.
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(next - performance.now())));
    this.#ref(keepAlive);
  }

  #ref(keepAlive: boolean): void {
    const id = this.#timer as unknown as number;
    if (keepAlive) Deno.refTimer(id);
    else Deno.unrefTimer(id);
  }
}

/** Something with a deadline: `expire` is called once it has passed. */
export interface Expiring {
  /** performance.now() by which it expires; 0: no deadline. */
  deadline: number;
  expire(): void;
}

/**
 * Items whose deadlines one sweep checks, every `periodMs` while any is registered.
 * `clearOnExpiry`: the deadline is set to 0 before `expire` (called once per deadline); otherwise
 * `expire` is expected to set a new deadline or unregister the item.
 */
export class DeadlineSet<T extends Expiring> implements Sweep {
  readonly periodMs: number;
  readonly keepAlive = true;
  readonly #items = new Set<T>();
  readonly #timers: Timers;
  readonly #clearOnExpiry: boolean;

  constructor(timers: Timers, periodMs: number, opts: { clearOnExpiry?: boolean } = {}) {
    this.#timers = timers;
    this.periodMs = periodMs;
    this.#clearOnExpiry = opts.clearOnExpiry ?? false;
  }

  register(item: T): void {
    this.#items.add(item);
    this.#timers.start(this);
  }

  unregister(item: T): void {
    this.#items.delete(item);
  }

  get size(): number {
    return this.#items.size;
  }

  run(now: number): boolean {
    for (const item of this.#items) {
      if (item.deadline && now >= item.deadline) {
        if (this.#clearOnExpiry) item.deadline = 0;
        item.expire();
      }
    }
    return this.#items.size > 0;
  }
}
