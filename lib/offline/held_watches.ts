/**
 * Offline WATCH: the stream is held open (not an empty 200 that makes clients relist in a tight
 * loop), with BOOKMARKs when asked for, and ended cleanly at timeoutSeconds or as soon as the
 * upstream is back, so informers relist from the cloud.
 */
import type { RequestContext } from "../proxy/context.ts";
import type { FoundList } from "./cached_lists.ts";
import { itemKind, parseJson } from "../cache/list_codec.ts";
import { statusObject } from "../proxy/status.ts";
import { log } from "../log.ts";

interface Held {
  ctx: RequestContext;
  end(): void;
}

/** Default when the client sets no timeoutSeconds: the apiserver's own minimum request timeout. */
const DEFAULT_TIMEOUT_S = 1800;

function numeric(rv: string): bigint | undefined {
  return /^\d+$/.test(rv) ? BigInt(rv) : undefined;
}

export class HeldWatches {
  #open = new Set<Held>();
  #bookmarkMs: number;
  served = 0;

  constructor(opts: { bookmarkIntervalMs: number }) {
    this.#bookmarkMs = opts.bookmarkIntervalMs;
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
    const initialEvents = q.get("sendInitialEvents") === "true";
    const bookmarks = q.get("allowWatchBookmarks") === "true" && json;
    const timeoutS = Number(q.get("timeoutSeconds") ?? "") || DEFAULT_TIMEOUT_S;

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
    const bookmark = (extra?: Record<string, string>) =>
      send("BOOKMARK", {
        kind,
        apiVersion,
        metadata: {
          resourceVersion: a !== undefined && have !== undefined && a > have ? asked : listRv,
          ...(extra ? { annotations: extra } : {}),
        },
      });
    if (initialEvents && json) bookmark({ "k8s.io/initial-events-end": "true" });

    const timers: Array<ReturnType<typeof setTimeout>> = [];
    const held: Held = {
      ctx,
      end: () => {
        if (!this.#open.delete(held)) return;
        for (const t of timers) clearTimeout(t), clearInterval(t);
        if (!res.writableEnded) res.end();
      },
    };
    this.#open.add(held);
    this.served++;
    timers.push(setTimeout(() => held.end(), timeoutS * 1000));
    if (bookmarks) timers.push(setInterval(() => bookmark(), this.#bookmarkMs));
    res.on("close", () => held.end());
    log.debug("holding offline watch", {
      path: ctx.info.path,
      items: list.items.length,
      timeoutSeconds: timeoutS,
    });
  }

  /** The upstream is back: end every held watch so clients relist from the cloud. */
  endAll(): number {
    const n = this.#open.size;
    for (const h of [...this.#open]) h.end();
    return n;
  }
}
