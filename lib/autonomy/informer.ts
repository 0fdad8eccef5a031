/**
 * A reflector like client-go's: list (paged) then watch from the list's resourceVersion with
 * bookmarks; a watch that ends is resumed from the last resourceVersion seen; 410 Gone (an ERROR
 * event or an HTTP 410) means a fresh list. Keeps the objects by namespace/name and reports
 * adds, updates and deletes (a relist reports what vanished meanwhile as deletes).
 */
import { log } from "../log.ts";
import { type KubeClient, KubeError } from "./kube_client.ts";

export type Obj = Record<string, unknown>;

/** What an informer tells its owner. */
export interface InformerHandlers {
  upsert(obj: Obj, old: Obj | undefined): void;
  remove(obj: Obj): void;
}

/** Counters an informer feeds. */
export interface InformerStats {
  relists: number;
  watchRestarts: number;
}

const PAGE = 500;
const MAX_BACKOFF_MS = 30_000;

/** namespace/name (or name for cluster-scoped objects). */
export function keyOf(o: Obj): string {
  const m = (o.metadata ?? {}) as { namespace?: string; name?: string };
  return m.namespace ? `${m.namespace}/${m.name}` : String(m.name);
}

function rvOf(o: Obj): string {
  return String(((o.metadata ?? {}) as { resourceVersion?: string }).resourceVersion ?? "");
}

export class Informer {
  readonly items = new Map<string, Obj>();
  readonly stats: InformerStats = { relists: 0, watchRestarts: 0 };
  synced = false;
  #rv = "";
  #abort = new AbortController();
  #done?: Promise<void>;

  constructor(
    readonly client: KubeClient,
    /** e.g. /api/v1/pods */
    readonly path: string,
    readonly query: Record<string, string>,
    readonly handlers: InformerHandlers,
    /** Watch length asked of the server (client-go picks 5-10 min). */
    readonly watchSeconds = 300 + Math.floor(Math.random() * 300),
  ) {}

  #url(extra: Record<string, string>): string {
    return `${this.path}?${new URLSearchParams({ ...this.query, ...extra })}`;
  }

  /** Lists everything (paged) and replaces the store; throws KubeError or a network error. */
  async list(): Promise<void> {
    const seen = new Map<string, Obj>();
    let cont = "";
    let rv = "";
    do {
      const page = await this.client.json(
        "GET",
        this.#url({ limit: String(PAGE), ...(cont ? { continue: cont } : {}) }),
      );
      for (const o of (page.items ?? []) as Obj[]) seen.set(keyOf(o), o);
      const meta = (page.metadata ?? {}) as { continue?: string; resourceVersion?: string };
      cont = meta.continue ?? "";
      rv = meta.resourceVersion ?? rv;
    } while (cont);
    this.stats.relists++;
    const gone = [...this.items.entries()].filter(([k]) => !seen.has(k));
    for (const [k, o] of gone) {
      this.items.delete(k);
      this.handlers.remove(o);
    }
    for (const [k, o] of seen) {
      const old = this.items.get(k);
      this.items.set(k, o);
      if (!old || rvOf(old) !== rvOf(o)) this.handlers.upsert(o, old);
    }
    this.#rv = rv;
    this.synced = true;
  }

  /** Records a newer state of an object learnt elsewhere (e.g. a PATCH answer). */
  observe(o: Obj): void {
    const k = keyOf(o);
    const old = this.items.get(k);
    if (old && Number(rvOf(o)) <= Number(rvOf(old))) return;
    this.items.set(k, o);
  }

  /** Watches (and relists when needed) until stop(); call after a successful list(). */
  start(): void {
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    let backoff = 250;
    let needList = false;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        const url = this.#url({
          watch: "1",
          resourceVersion: this.#rv,
          allowWatchBookmarks: "true",
          timeoutSeconds: String(this.watchSeconds),
        });
        const started = Date.now();
        let events = 0;
        // A link that dies silently would hold the watch forever: give up once the server is
        // well past the timeout it was asked for without a word.
        const idle = new AbortController();
        const idleMs = (this.watchSeconds + 30) * 1000;
        let idleTimer = setTimeout(() => idle.abort(), idleMs);
        try {
          for await (const ev of this.client.watch(url, AbortSignal.any([signal, idle.signal]))) {
            events++;
            clearTimeout(idleTimer);
            idleTimer = setTimeout(() => idle.abort(), idleMs);
            if (ev.type === "ERROR") {
              const code = Number((ev.object as { code?: number }).code ?? 0);
              needList = code === 410;
              if (!needList) {
                log.warn(
                  "watch error event",
                  { path: this.path, message: String(ev.object.message) },
                  `autonomy.watch-error:${this.path}`,
                );
              }
              break;
            }
            const rv = rvOf(ev.object);
            if (rv) this.#rv = rv;
            if (ev.type === "BOOKMARK") continue;
            const k = keyOf(ev.object);
            const old = this.items.get(k);
            if (ev.type === "DELETED") {
              this.items.delete(k);
              this.handlers.remove(ev.object);
            } else {
              this.items.set(k, ev.object);
              this.handlers.upsert(ev.object, old);
            }
            backoff = 250;
          }
        } finally {
          clearTimeout(idleTimer);
        }
        this.stats.watchRestarts++;
        if (needList) log.info("watch expired (410): relisting", { path: this.path });
        else if (events === 0 && Date.now() - started < 1000) {
          // A server that ends watches at once must not make us spin.
          await sleep(backoff, signal);
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
      } catch (e) {
        if (signal.aborted) break;
        this.stats.watchRestarts++;
        if (e instanceof KubeError && e.status === 410) {
          needList = true;
          log.info("resourceVersion too old (410): relisting", { path: this.path });
          continue;
        }
        log.warn("watch failed: retrying", {
          path: this.path,
          error: (e as Error).message,
          retryMs: backoff,
        }, `autonomy.watch-failed:${this.path}`);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done?.catch(() => {});
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
