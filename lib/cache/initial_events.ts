/**
 * WatchList (`sendInitialEvents=true`): the events before the `k8s.io/initial-events-end` BOOKMARK
 * are the collection's complete state at that bookmark's resourceVersion, so they are collected
 * and, at the bookmark, become the cached list (replacing the old one in one write). A stream cut
 * before the bookmark, an ERROR, or a snapshot over the byte bound leaves the cache as it was.
 */
import type { WatchEvent } from "./watch_event.ts";
import { itemKeyOf, metaOf } from "./list_codec.ts";

const enc = new TextEncoder();

/** The annotation the apiserver puts on the BOOKMARK that ends the initial events. */
export const INITIAL_EVENTS_END = "k8s.io/initial-events-end";

/** A complete list from the initial events, ready to replace the cached one. */
export interface InitialSnapshot {
  /** `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"…"}}` */
  envelope: string;
  resourceVersion: string;
  items: Array<[itemKey: string, body: Uint8Array]>;
}

/** What one event did to the snapshot being collected. */
export type SnapshotStep =
  | { state: "collecting" }
  | { state: "complete"; snapshot: InitialSnapshot }
  | { state: "abandoned"; reason: string };

/** True when a BOOKMARK object carries `k8s.io/initial-events-end: "true"`. */
export function isInitialEventsEnd(ev: WatchEvent): boolean {
  if (ev.type !== "BOOKMARK") return false;
  const annotations = metaOf(ev.object).annotations as Record<string, unknown> | undefined;
  return annotations?.[INITIAL_EVENTS_END] === "true";
}

/** Collects the initial events of one watch-list stream, within `maxBytes` of item bodies. */
export class InitialEventsCollector {
  #items = new Map<string, Uint8Array>();
  #bytes = 0;
  #kind = "";
  #apiVersion = "";

  constructor(readonly maxBytes: number) {}

  /** Feeds one event (in stream order). After "complete" or "abandoned", feed no more. */
  add(ev: WatchEvent): SnapshotStep {
    const obj = ev.object as { kind?: unknown; apiVersion?: unknown } | undefined;
    if (!this.#kind && typeof obj?.kind === "string" && typeof obj.apiVersion === "string") {
      this.#kind = obj.kind;
      this.#apiVersion = obj.apiVersion;
    }
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED": {
        const key = ev.itemKey ?? itemKeyOf(ev.object);
        const body = ev.raw ?? enc.encode(JSON.stringify(ev.object));
        this.#bytes += body.byteLength - (this.#items.get(key)?.byteLength ?? 0);
        this.#items.set(key, body);
        if (this.#bytes > this.maxBytes) return this.#abandon(`initial events over ${this.maxBytes} bytes`);
        return { state: "collecting" };
      }
      case "DELETED": {
        const key = ev.itemKey ?? itemKeyOf(ev.object);
        this.#bytes -= this.#items.get(key)?.byteLength ?? 0;
        this.#items.delete(key);
        return { state: "collecting" };
      }
      case "BOOKMARK": {
        if (!isInitialEventsEnd(ev)) return { state: "collecting" };
        const resourceVersion = ev.resourceVersion ?? String(metaOf(ev.object).resourceVersion ?? "");
        if (!resourceVersion || !this.#kind) return this.#abandon("end bookmark without a version or kind");
        const envelope = JSON.stringify({
          kind: `${this.#kind}List`,
          apiVersion: this.#apiVersion,
          metadata: { resourceVersion },
        });
        const items = [...this.#items].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
        this.#items.clear();
        return { state: "complete", snapshot: { envelope, resourceVersion, items } };
      }
      default:
        return this.#abandon(`${ev.type} event before the end of the initial events`);
    }
  }

  #abandon(reason: string): SnapshotStep {
    this.#items.clear();
    this.#bytes = 0;
    return { state: "abandoned", reason };
  }
}
