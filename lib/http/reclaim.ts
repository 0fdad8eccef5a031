/**
 * Gives memory back after bulk traffic. Bytes that pass through (a multi-MiB list, request bodies,
 * a watch flood cut for its slow reader) leave dead ArrayBuffers behind; V8 counts them as external
 * memory and waits for ~64 MiB more of it before a full GC, so RSS stays tens of MiB up for as long
 * as the proxy is quiet (measured: 121 -> 87 MiB after one full GC after a 5,000-pod LIST; the
 * attack bench's floods left 112-170 MiB). So the bytes relayed and the connections closed are
 * counted here, and:
 * - one full GC runs a short while after the traffic stops (a burst costs one), once at least
 *   LARGE_ANSWER_BYTES went through;
 * - under a flood that never stops, one full GC per BURST_BYTES relayed, at most one per
 *   BURST_INTERVAL_MS, bounds the garbage between collections (the peak).
 * Needs V8's `--expose-gc` (deploy/v8-flags); without it this does nothing.
 */

/** Bytes (relayed since the last collection) that schedule one after the traffic stops. */
export const LARGE_ANSWER_BYTES = 4 << 20;
/** The quiet-time collection runs this long after the last bytes counted. */
export const RECLAIM_DELAY_MS = 500;
/** Relayed since the last collection, this many bytes collect now (rate-limited)... */
export const BURST_BYTES = 8 << 20;
/** ...at most once per this many ms (a full GC of this heap is 3-20 ms on a loaded 2-CPU box: under a
 * flood of bulk bytes at most a few % of CPU; ordinary requests never reach BURST_BYTES this fast). */
export const BURST_INTERVAL_MS = 250;
/** Whole answers smaller than this are not counted (the young generation takes them cheaply). */
export const SMALL_ANSWER_BYTES = 64 << 10;
/** What a closed connection leaves behind for the collector (socket, TLS and parser state). */
export const CONNECTION_BYTES = 16 << 10;

type Gc = () => void;
let gc: Gc | undefined = (globalThis as { gc?: Gc }).gc;
let timer: ReturnType<typeof setTimeout> | undefined;
let collections = 0;
/** Bytes counted since the last collection. */
let since = 0;
let lastAt = -Infinity;
/** The pending collection is a burst one (runs on the next turn). */
let burst = false;

function collect(): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  burst = false;
  since = 0;
  lastAt = performance.now();
  collections++;
  gc?.();
}

/** `bytes` went through (an answer, a request body, bytes dropped): they become garbage. */
export function passed(bytes: number): void {
  if (!gc || bytes <= 0) return;
  since += bytes;
  if (burst) return;
  if (since >= BURST_BYTES && performance.now() - lastAt >= BURST_INTERVAL_MS) {
    // Not inside the caller's I/O callback: the next turn.
    if (timer !== undefined) clearTimeout(timer);
    burst = true;
    timer = setTimeout(collect, 0);
    Deno.unrefTimer(timer as unknown as number);
    return;
  }
  if (since < LARGE_ANSWER_BYTES) return;
  if (timer !== undefined) clearTimeout(timer);
  timer = setTimeout(collect, RECLAIM_DELAY_MS);
  // Never what keeps the process alive.
  Deno.unrefTimer(timer as unknown as number);
}

/** A whole answer of `bytes` went out (small ones are not counted). */
export function answered(bytes: number): void {
  if (bytes >= SMALL_ANSWER_BYTES) passed(bytes);
}

/** A connection closed: its buffers and state are garbage now. */
export function connectionClosed(): void {
  passed(CONNECTION_BYTES);
}

/** Collections run so far (for tests and metrics). */
export function reclaimCollections(): number {
  return collections;
}

/** Tests: replace the collector (undefined: none); returns the previous one. */
export function setCollector(fn: Gc | undefined): Gc | undefined {
  const prev = gc;
  gc = fn;
  since = 0;
  lastAt = -Infinity;
  burst = false;
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  return prev;
}
