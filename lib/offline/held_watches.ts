/**
 * Offline WATCH: the stream is held open (never an empty 200 that makes clients relist in a tight
 * loop), with BOOKMARKs when asked for and nothing invented. Two ways in:
 * - `hold`: a watch asked for while offline, answered from a cached list;
 * - `adopt`: a watch relayed from the cloud whose upstream stream died or froze (link cut, the
 *   proxy going offline): the client's stream stays open and carries on from the last
 *   resourceVersion it saw, so a running `kubectl get -w` or informer does not notice the cut.
 * When the cloud is back, each held watch is resumed upstream from the last resourceVersion the
 * client saw (it gets the changes it missed, in order, or the cloud's own 410 and relists); one
 * whose position is unknown is ended so the client relists from the cloud. A held watch also
 * ends when its `timeoutSeconds` (counted from the client's request) runs out, as the apiserver
 * would end it.
 */
import type { RequestContext } from "../exchange/context.ts";
import type { FoundList } from "./cached_lists.ts";
import { itemKind, parseJson } from "../cache/list_codec.ts";
import { statusObject } from "../exchange/status.ts";
import { log } from "../log.ts";
import { queryFlag } from "../request/request_info.ts";

/** kind and apiVersion of the objects a watch is about, from what the cache holds. */
export type KindOf = (ctx: RequestContext) => Promise<{ kind: string; apiVersion: string } | undefined>;

/** Re-attaches a held watch to the cloud from `fromRv` (the client's stream is kept). */
export type ResumeWatch = (ctx: RequestContext, fromRv: string) => void;

interface Held {
  ctx: RequestContext;
  /** The last resourceVersion the client saw ("" when unknown: cannot be resumed). */
  rv(): string;
  /** Stops holding (timers, bookkeeping); `endStream`: also end the client's response. */
  release(endStream: boolean): void;
}

/** Default when the client sets no timeoutSeconds: the apiserver's own minimum request timeout. */
const DEFAULT_TIMEOUT_S = 1800;

function numeric(rv: string): bigint | undefined {
  return /^\d+$/.test(rv) ? BigInt(rv) : undefined;
}

export class HeldWatches {
  #open = new Set<Held>();
  #byCtx = new WeakMap<RequestContext, Held>();
  #bookmarkMs: number;
  #kindOf?: KindOf;
  served = 0;
  adopted = 0;

  /** `kindOf`: the watched objects' kind, for BOOKMARKs on a watch cut before its first event. */
  constructor(opts: { bookmarkIntervalMs: number; kindOf?: KindOf }) {
    this.#bookmarkMs = opts.bookmarkIntervalMs;
    this.#kindOf = opts.kindOf;
  }

  get count(): number {
    return this.#open.size;
  }

  /** Serves a watch from `list` (already filtered to the request's selectors). */
  hold(ctx: RequestContext, list: FoundList): void {
    const q = ctx.info.query;
    const res = ctx.res;
    const json = ctx.rep === "json";
    const listRv = list.meta.resourceVersion;
    const asked = q.get("resourceVersion") ?? "";
    const initialEvents = queryFlag(q, "sendInitialEvents");

    ctx.source = "cache";
    res.writeHead(200, {
      "content-type": "application/json",
      "cache-control": "no-cache, private",
      "x-lite-apiserver-source": "cache",
    });
    res.flushHeaders();
    const send = (type: string, object: unknown) => {
      const line = JSON.stringify({ type, object });
      res.write((ctx.rewrite ? ctx.rewrite.line(line) : line) + "\n");
    };
    const { kind, apiVersion } = itemKind(list.meta.envelope);

    const a = numeric(asked);
    const have = numeric(listRv);
    if (!initialEvents && a !== undefined && a !== 0n && have !== undefined && a < have) {
      // The client missed changes we only know as a newer list: make it relist (from the cache).
      send("ERROR", statusObject(410, `too old resource version: ${asked} (${listRv})`, "Expired"));
      res.end();
      return;
    }
    if (json && (initialEvents || asked === "" || asked === "0")) {
      for (const body of list.items) send("ADDED", { kind, apiVersion, ...parseJson(body) as object });
    }
    // Where the client now is: the version it asked for if we know nothing newer, else the list's.
    const rv = a !== undefined && have !== undefined && a > have ? asked : listRv;
    if (initialEvents && json) {
      sendBookmark(ctx, kind, apiVersion, rv, { "k8s.io/initial-events-end": "true" });
    }
    const progress = ctx.plan?.progress;
    if (progress) Object.assign(progress, { lastRv: rv, kind, apiVersion, partial: false });
    this.served++;
    this.#keep(ctx, () => progress?.lastRv ?? rv, kind, apiVersion);
    log.debug("holding offline watch", { path: ctx.info.path, items: list.items.length });
  }

  /**
   * The upstream stream of a relayed watch died or froze: keep the client's stream open and
   * carry on from the last event it saw. Idempotent. Returns false when the stream cannot carry
   * on (already ended, or cut in the middle of an event): it is then ended, so the client relists.
   */
  adopt(ctx: RequestContext): boolean {
    if (this.#byCtx.has(ctx)) return true;
    const res = ctx.res;
    if (!clientConnected(ctx)) return false;
    const progress = ctx.plan?.progress;
    if (!progress || progress.partial) {
      res.end();
      return false;
    }
    if (!progress.lastRv) progress.lastRv = ctx.info.query.get("resourceVersion") ?? "";
    this.adopted++;
    this.#keep(ctx, () => progress.lastRv, progress.kind, progress.apiVersion);
    log.info("upstream watch cut: holding the client's watch from the cache", {
      path: ctx.info.path,
      resourceVersion: progress.lastRv,
    });
    return true;
  }

  #keep(ctx: RequestContext, rv: () => string, kind: string, apiVersion: string): void {
    const q = ctx.info.query;
    const res = ctx.res;
    const bookmarks = queryFlag(q, "allowWatchBookmarks") && ctx.rep === "json";
    // timeoutSeconds counts from the client's request, as the apiserver counts it.
    const timeoutS = Number(q.get("timeoutSeconds") ?? "") || DEFAULT_TIMEOUT_S;
    const leftMs = Math.max(0, ctx.startedAt + timeoutS * 1000 - performance.now());
    const timers: Array<ReturnType<typeof setTimeout>> = [];
    const held: Held = {
      ctx,
      rv,
      release: (endStream) => {
        if (!this.#open.delete(held)) return;
        this.#byCtx.delete(ctx);
        for (const t of timers) clearTimeout(t), clearInterval(t);
        if (endStream && !res.writableEnded) res.end();
      },
    };
    this.#open.add(held);
    this.#byCtx.set(ctx, held);
    timers.push(setTimeout(() => held.release(true), leftMs));
    const startBookmarks = (k: string, v: string) => {
      if (!this.#open.has(held)) return;
      timers.push(setInterval(() => sendBookmark(ctx, k, v, rv()), this.#bookmarkMs));
    };
    if (bookmarks && kind) startBookmarks(kind, apiVersion);
    else if (bookmarks && this.#kindOf) {
      // Cut before any event: the kind comes from the cached lists (no kind, no BOOKMARKs).
      this.#kindOf(ctx).then((k) => k && startBookmarks(k.kind, k.apiVersion)).catch(() => {});
    }
    res.once("close", () => held.release(false));
  }

  /**
   * The cloud is back: each held watch is resumed from the last resourceVersion its client saw
   * (or ended when that is unknown). `only`: just that watch. Returns how many were resumed.
   */
  cloudBack(resume: ResumeWatch, only?: RequestContext): number {
    let resumed = 0;
    const targets = only ? [this.#byCtx.get(only)].filter((h): h is Held => !!h) : [...this.#open];
    for (const h of targets) {
      const rv = h.rv();
      const open = clientConnected(h.ctx);
      h.release(!rv);
      if (!rv || !open) continue;
      resumed++;
      resume(h.ctx, rv);
    }
    return resumed;
  }

  /** Ends every held watch (shutting down). */
  endAll(): number {
    const n = this.#open.size;
    for (const h of [...this.#open]) h.release(true);
    return n;
  }
}

/** The client's response can still be written to (the client has not gone away). */
function clientConnected(ctx: RequestContext): boolean {
  const res = ctx.res;
  const socket = res.socket ?? ctx.req.socket;
  return !res.writableEnded && !res.destroyed && !!socket && !socket.destroyed;
}

function sendBookmark(
  ctx: RequestContext,
  kind: string,
  apiVersion: string,
  resourceVersion: string,
  annotations?: Record<string, string>,
): void {
  if (ctx.res.writableEnded) return;
  const metadata = { resourceVersion, ...(annotations ? { annotations } : {}) };
  ctx.res.write(JSON.stringify({ type: "BOOKMARK", object: { kind, apiVersion, metadata } }) + "\n");
}
