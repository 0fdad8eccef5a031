/**
 * Who a request is, as far as the upstream and the cache are concerned.
 *
 * The cache is keyed by `cacheId`, which names the credential the proxy forwards with:
 * a verified certificate whose CN and groups match a configured pair, a bearer token (by hash), or
 * nothing. A caller therefore only ever reads data fetched with credentials equal to its own.
 * `uncertain`: credentials the proxy cannot classify exactly as the apiserver would (another
 * Authorization scheme, several Authorization headers, a malformed token...): such a request is
 * forwarded as it is, but never cached and never answered from the cache.
 */
export type Identity =
  | { kind: "cert"; cn: string; groups: string[]; cacheId: string }
  | { kind: "token"; tokenHash: string; cacheId: string }
  | { kind: "anonymous"; cacheId: string }
  | { kind: "uncertain"; reason: string; cacheId: "" };

/** The identity a configured client pair asserts: its CN and its set of groups (O), order-free. */
export function pairIdentity(cn: string, groups: readonly string[]): string {
  return JSON.stringify([cn, [...new Set(groups)].sort()]);
}
