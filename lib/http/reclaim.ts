/**
 * Gives memory back after large answers. A multi-megabyte list (5,000 pods is ~10 MiB) leaves tens
 * of MiB of dead ArrayBuffers behind (its body, its chunks, the cache's copy); V8 counts them as
 * external memory and waits for ~64 MiB more of it before a full GC, so RSS stays ~30 MiB up for
 * as long as the proxy is quiet (measured: 121 -> 87 MiB after one full GC). One full GC, a short
 * while after the last large answer, frees them. Needs V8's `--expose-gc` (deploy/v8-flags); without
 * it this does nothing.
 */

/** Answers of at least this many bytes schedule a collection. */
export const LARGE_ANSWER_BYTES = 4 << 20;
/** The collection runs this long after the last large answer (a burst of lists costs one GC). */
export const RECLAIM_DELAY_MS = 500;

type Gc = () => void;
let gc: Gc | undefined = (globalThis as { gc?: Gc }).gc;
let timer: ReturnType<typeof setTimeout> | undefined;
let collections = 0;

/** An answer of `bytes` went out: schedules one full GC if it was large. */
export function answered(bytes: number): void {
  if (bytes < LARGE_ANSWER_BYTES || !gc) return;
  if (timer !== undefined) clearTimeout(timer);
  timer = setTimeout(() => {
    timer = undefined;
    collections++;
    gc?.();
  }, RECLAIM_DELAY_MS);
  // Never what keeps the process alive.
  Deno.unrefTimer(timer as unknown as number);
}

/** Collections run so far (for tests and metrics). */
export function reclaimCollections(): number {
  return collections;
}

/** Tests: replace the collector (undefined: none); returns the previous one. */
export function setCollector(fn: Gc | undefined): Gc | undefined {
  const prev = gc;
  gc = fn;
  return prev;
}
