/**
 * Who a request is, as far as the upstream and the cache are concerned.
 *
 * The cache is keyed by `cacheId`, which names the credential the proxy forwards with:
 * a verified certificate CN whose pair is configured, a bearer token (by hash), or nothing.
 * A caller therefore only ever reads data fetched with credentials equal to its own.
 */
export type Identity =
  | { kind: "cert"; cn: string; groups: string[]; cacheId: string }
  | { kind: "token"; tokenHash: string; cacheId: string }
  | { kind: "anonymous"; cacheId: string };
