/**
 * The admin view of a running proxy: cache usage (walked from the store, cached for a few
 * seconds) and the `/status` snapshot the `status` command prints. Never exposes a token nor its
 * hash: all token identities share one row. Other identities (certificate CNs, impersonation ids)
 * are named only when the operator chose to (`--admin-identities show`, the default on loopback).
 */
import type { EntryInfo, Store } from "../store/store.ts";
import type { EndpointState } from "../upstream/health.ts";
import type { PairStatus } from "../certs/client_watcher.ts";

/** Cache usage of one identity (or of the whole store). */
export interface UsageRow {
  /**
   * The identity as shown: `cn~…`, `anonymous` (+ `~imp=…` when impersonating), `token~*` for all
   * tokens; with identities hidden, `cn~*`, `token~*` and `anonymous~*`.
   */
  identity: string;
  /** How many cached identities the row sums. */
  identities: number;
  entries: number;
  /** Objects plus list items. */
  items: number;
  bytes: number;
}

export interface CacheUsage {
  backend: string;
  entries: number;
  items: number;
  bytes: number;
  identities: UsageRow[];
  computedAtMs: number;
}

/** The row a cacheId is counted in: token hashes never appear; other ids only when shown. */
export function displayIdentity(cacheId: string, show = true): string {
  if (cacheId.startsWith("token~")) {
    const imp = /~imp=[0-9a-f]+$/.exec(cacheId)?.[0] ?? "";
    return `token~*${show ? imp : ""}`;
  }
  if (show) return cacheId;
  return cacheId.startsWith("cn~") ? "cn~*" : "anonymous~*";
}

/** Sums store entries per identity (per kind of identity when they are hidden). */
export function summariseEntries(
  backend: string,
  entries: EntryInfo[],
  now = Date.now(),
  show = true,
): CacheUsage {
  const rows = new Map<string, UsageRow & { ids: Set<string> }>();
  let bytes = 0, items = 0;
  for (const e of entries) {
    const id = displayIdentity(e.key.identity, show);
    let row = rows.get(id);
    if (!row) {
      rows.set(id, row = { identity: id, identities: 0, entries: 0, items: 0, bytes: 0, ids: new Set() });
    }
    row.ids.add(e.key.identity);
    row.entries++;
    row.items += e.count;
    row.bytes += e.bytes;
    bytes += e.bytes;
    items += e.count;
  }
  const identities = [...rows.values()]
    .map(({ ids, ...row }) => ({ ...row, identities: ids.size }))
    .sort((a, b) => a.identity.localeCompare(b.identity));
  return { backend, entries: entries.length, items, bytes, identities, computedAtMs: now };
}

/**
 * Walks the store at most once per `ttlMs`: scrapes and status calls in between get the last
 * result, and concurrent callers share one walk.
 */
export class UsageCache {
  #store: Pick<Store, "backend" | "entries">;
  #ttlMs: number;
  #show: boolean;
  #last?: CacheUsage;
  #running?: Promise<CacheUsage>;
  /** The last walk's error, if it failed (the store is closed or broken). */
  error?: string;

  constructor(store: Pick<Store, "backend" | "entries">, ttlMs = 5000, showIdentities = true) {
    this.#store = store;
    this.#ttlMs = ttlMs;
    this.#show = showIdentities;
  }

  get last(): CacheUsage | undefined {
    return this.#last;
  }

  get(): Promise<CacheUsage | undefined> {
    if (this.#last && Date.now() - this.#last.computedAtMs < this.#ttlMs) return Promise.resolve(this.#last);
    this.#running ??= this.#store.entries()
      .then((entries) => {
        this.error = undefined;
        return this.#last = summariseEntries(this.#store.backend, entries, Date.now(), this.#show);
      })
      .finally(() => this.#running = undefined);
    return this.#running.catch((e) => {
      this.error = (e as Error).message;
      return this.#last;
    });
  }
}

export interface EndpointStatus {
  url: string;
  healthy: boolean;
  consecutiveFailures: number;
  lastError?: string;
  latencyMs?: number;
  lastProbe?: string;
}

export interface CertStatus {
  cn: string;
  certFile: string;
  notAfter?: string;
  expiresInSeconds?: number;
  problem?: string;
}

/** A run of cache writes the store rejected (e.g. the disk is full), as `/status` shows it. */
export interface WriteFailureStatus {
  /** ISO time of the run's first failure. */
  since: string;
  /** ISO time of the latest failure. */
  last: string;
  /** The latest error's message (e.g. "No space left on device (os error 28)"). */
  error: string;
  /** Cache writes lost in this run. */
  failedOps: number;
}

export interface QueueStats {
  depth: number;
  bytes: number;
  dropped: number;
  written: number;
  failed: number;
  /** Set while the store rejects writes (until one succeeds). */
  failing?: WriteFailureStatus;
  /** The last run of failures, also after writes recovered. */
  lastFailure?: WriteFailureStatus;
}

/** The write queue's failure record in the form `/status` shows. */
export function failureStatus(
  f: { sinceMs: number; lastMs: number; error: string; failedOps: number } | undefined,
): WriteFailureStatus | undefined {
  if (!f) return undefined;
  return {
    since: new Date(f.sinceMs).toISOString(),
    last: new Date(f.lastMs).toISOString(),
    error: f.error,
    failedOps: f.failedOps,
  };
}

/** The JSON answer of `/status`. */
export interface StatusReport {
  version: string;
  uptimeSeconds: number;
  online: boolean;
  /** Online, every endpoint healthy and no certificate problem. */
  healthy: boolean;
  /** Why `healthy` is false, one line each. */
  problems: string[];
  stateSince: string;
  transitions: number;
  endpoints: EndpointStatus[];
  cache?: CacheUsage;
  cacheError?: string;
  certs: CertStatus[];
  queue: QueueStats;
  heldWatches: number;
  rssBytes: number;
}

export interface StatusSource {
  version: string;
  startedAtMs: number;
  health: { online: boolean; endpoints: EndpointState[]; changedAt: number; transitions: number };
  usage: UsageCache;
  queue: QueueStats;
  heldWatches: number;
  pairs?: { status(): PairStatus[] };
  /** Name client identities (CNs, certificate files); else they are numbered. */
  showIdentities?: boolean;
}

/** Client pairs as the admin endpoints show them: numbered (`#1`) when identities are hidden. */
export function shownPairs(pairs: PairStatus[], show: boolean): PairStatus[] {
  return show ? pairs : pairs.map((p, i) => ({ ...p, cn: `#${i + 1}`, certFile: "(hidden)" }));
}

/** Builds the `/status` report (walks the store if the last walk is older than the cache TTL). */
export async function buildStatus(src: StatusSource): Promise<StatusReport> {
  const now = Date.now();
  const cache = await src.usage.get();
  const endpoints = src.health.endpoints.map((e): EndpointStatus => ({
    url: e.url,
    healthy: e.healthy,
    consecutiveFailures: e.consecutiveFailures,
    lastError: e.lastError,
    latencyMs: e.lastLatencyMs === undefined ? undefined : Math.round(e.lastLatencyMs * 10) / 10,
    lastProbe: e.lastProbeMs ? new Date(e.lastProbeMs).toISOString() : undefined,
  }));
  const certs = shownPairs(src.pairs?.status() ?? [], src.showIdentities ?? true).map((p): CertStatus => ({
    cn: p.cn,
    certFile: p.certFile,
    notAfter: p.notAfter?.toISOString(),
    expiresInSeconds: p.notAfter ? Math.round((p.notAfter.getTime() - now) / 1000) : undefined,
    problem: p.problem,
  }));
  const problems: string[] = [];
  if (!src.health.online) {
    problems.push("offline: no upstream endpoint is healthy (serving reads from the cache)");
  }
  for (const e of endpoints) {
    if (!e.healthy) problems.push(`endpoint ${e.url} unhealthy: ${e.lastError ?? "failing"}`);
  }
  for (const c of certs) {
    if (c.problem) problems.push(`client certificate ${c.cn || c.certFile}: ${c.problem}`);
    else if (c.expiresInSeconds !== undefined && c.expiresInSeconds <= 0) {
      problems.push(`client certificate ${c.cn} expired at ${c.notAfter}`);
    }
  }
  if (src.usage.error) problems.push(`cache store unreadable: ${src.usage.error}`);
  const w = src.queue.failing;
  if (w) {
    // Requests are still answered (from upstream); what is lost is offline coverage.
    problems.push(
      `cache writes failing since ${w.since}: ${w.error} (${w.failedOps} cache writes lost, last at ${w.last}; ` +
        "requests are still answered, the cache is not updated)",
    );
  }
  return {
    version: src.version,
    uptimeSeconds: Math.round((now - src.startedAtMs) / 1000),
    online: src.health.online,
    healthy: problems.length === 0,
    problems,
    stateSince: new Date(src.health.changedAt).toISOString(),
    transitions: src.health.transitions,
    endpoints,
    cache,
    cacheError: src.usage.error,
    certs,
    queue: src.queue,
    heldWatches: src.heldWatches,
    rssBytes: Deno.memoryUsage().rss,
  };
}
