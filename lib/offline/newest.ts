/**
 * Which of several cached copies of the same thing is the newest: an object cached by its GET and
 * the same object as an item of cached lists (kept current by watch events), or a list cached for
 * a request and a broader list it can be derived from. resourceVersions are compared as numbers
 * when both are integers (etcd's revisions are); when they cannot be compared, the copy written
 * most recently wins.
 */

/** One cached copy: its resourceVersion and when it was last written (epoch ms). */
export interface Versioned {
  resourceVersion: string;
  writtenAt: number;
}

function revision(rv: string): bigint | undefined {
  return /^\d{1,30}$/.test(rv) ? BigInt(rv) : undefined;
}

/** True when `a` is strictly newer than `b`. */
export function isNewer(a: Versioned, b: Versioned): boolean {
  const ra = revision(a.resourceVersion);
  const rb = revision(b.resourceVersion);
  if (ra !== undefined && rb !== undefined && ra !== rb) return ra > rb;
  return a.writtenAt > b.writtenAt;
}

/** The newest of `copies` (the first of equals), or undefined when there are none. */
export function newest<T extends Versioned>(copies: Iterable<T>): T | undefined {
  let best: T | undefined;
  for (const c of copies) if (!best || isNewer(c, best)) best = c;
  return best;
}
