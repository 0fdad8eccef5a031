/**
 * Asynchronous, batched, bounded writes to the store. A client's response never waits for the
 * disk; when the queue is full, cache writes are dropped (and counted), never requests.
 */
import type { Store, WriteOp } from "../store/store.ts";
import { log } from "../log.ts";

/** Ops per store transaction: large enough to amortise a commit, small enough to keep each short. */
const BATCH_OPS = 1024;

export function opBytes(op: WriteOp): number {
  switch (op.op) {
    case "putObject":
      return op.value.body.byteLength + 256;
    case "replaceList":
      return op.items.reduce((n, [k, b]) => n + k.length + b.byteLength, op.meta.envelope.length + 256);
    case "upsertItem":
      return op.body.byteLength + 256;
    default:
      return 256;
  }
}

export class WriteQueue {
  #store: Store;
  #maxBytes: number;
  #ops: WriteOp[] = [];
  #bytes = 0;
  #running?: Promise<void>;
  #idleWaiters: Array<() => void> = [];
  dropped = 0;
  written = 0;
  failed = 0;
  batches = 0;

  constructor(store: Store, maxBytes: number) {
    this.#store = store;
    this.#maxBytes = maxBytes;
  }

  get depth(): number {
    return this.#ops.length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Queues one write; false if it was dropped because the queue is full. */
  push(op: WriteOp): boolean {
    const size = opBytes(op);
    if (this.#bytes + size > this.#maxBytes) {
      this.dropped++;
      if (this.dropped === 1 || this.dropped % 1000 === 0) {
        log.warn("cache write queue full: dropping cache writes (requests are unaffected)", {
          dropped: this.dropped,
          queuedBytes: this.#bytes,
        });
      }
      return false;
    }
    this.#ops.push(op);
    this.#bytes += size;
    this.#running ??= this.#drain();
    return true;
  }

  async #drain(): Promise<void> {
    // Yield first so a burst of pushes from one response lands in one batch.
    await new Promise((r) => setTimeout(r, 0));
    while (this.#ops.length) {
      const batch = this.#ops.splice(0, BATCH_OPS);
      const size = batch.reduce((n, op) => n + opBytes(op), 0);
      try {
        await this.#store.apply(batch);
        this.written += batch.length;
      } catch (err) {
        this.failed += batch.length;
        log.error("cache write failed", { ops: batch.length, error: (err as Error).message });
      }
      this.#bytes -= size;
      this.batches++;
      // SQLite commits run on this thread: let client I/O through between batches, so a backlog
      // of cache writes can never starve requests.
      if (this.#ops.length) await new Promise((r) => setTimeout(r, 0));
    }
    this.#running = undefined;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** Resolves true when everything queued so far is written, false after timeoutMs. */
  idle(timeoutMs = 5000): Promise<boolean> {
    if (!this.#running) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.#idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Writes what is queued (at shutdown). */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
  }
}
