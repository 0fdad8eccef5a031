/**
 * How large the cache may grow, per identity and overall (bytes and entries): a configuration
 * value, read by `serve`'s flags and enforced by lib/cache/cache_budget.ts.
 */

export interface Bound {
  bytes: number;
  entries: number;
}

export interface CacheBounds {
  perIdentity: Bound;
  total: Bound;
}

export const DEFAULT_BOUNDS: CacheBounds = {
  perIdentity: { bytes: 512 << 20, entries: 20_000 },
  total: { bytes: 2 * 1024 ** 3, entries: 200_000 },
};
