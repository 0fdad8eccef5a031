/**
 * Asynchronous, batched, bounded writes to the store. A client's response never waits for the
 * disk; when the queue is full, cache writes are dropped (and counted), never requests.
 */
import type { Store, WriteOp } from "../store/store.ts";
import { log } from "../log.ts";
import { answered as largeWorkDone } from "../http/reclaim.ts";

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

/** A run of failed store writes (e.g. the disk is full). */
export interface WriteFailure {
  /** The first failure of the run (epoch ms). */
  sinceMs: number;
  /** The latest failure (epoch ms). */
  lastMs: number;
  /** The latest error's message. */
  error: string;
  /** Ops and batches the store rejected in this run. */
  failedOps: number;
  failedBatches: number;
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
  /** The store's rejections since the last write that succeeded (a full disk): undefined when writes work. */
  failing?: WriteFailure;
  /** The last rejection, kept after writes recover (for /status). */
  lastFailure?: WriteFailure;

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
      log.warn("cache write queue full: dropping cache writes (requests are unaffected)", {
        dropped: this.dropped,
        queuedBytes: this.#bytes,
      }, "cache.write-queue-full");
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
        this.#recovered();
        // A large list's write leaves its items' dead buffers behind (the file store's per-item
        // writes finish seconds after the answer's own reclaim GC ran): 15 MiB for 5,000 pods,
        // held until V8's external-memory limit. One more collection after the write frees them.
        largeWorkDone(size);
      } catch (err) {
        this.#failure(batch.length, err as Error);
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

  #failure(ops: number, err: Error): void {
    this.failed += ops;
    const now = Date.now();
    const f = this.failing ??= { sinceMs: now, lastMs: now, error: "", failedOps: 0, failedBatches: 0 };
    Object.assign(f, { lastMs: now, error: err.message, failedOps: f.failedOps + ops });
    f.failedBatches++;
    this.lastFailure = { ...f };
    // Requests go on (they never wait for the cache); a full disk fails every batch: one line per window.
    log.error("cache write failed: requests are unaffected, the cache is not updated", {
      ops,
      error: err.message,
      failingSince: new Date(f.sinceMs).toISOString(),
    }, "cache.write-failed");
  }

  #recovered(): void {
    if (!this.failing) return;
    log.info("cache writes succeed again", {
      failedOps: this.failing.failedOps,
      failingSince: new Date(this.failing.sinceMs).toISOString(),
    }, "cache.write-recovered"); // a nearly full disk can take some writes and not others: flip-flops
    this.failing = undefined;
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
