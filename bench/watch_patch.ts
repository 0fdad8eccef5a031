/**
 * Watch patching in-process: a cached list of N pods, then E MODIFIED events through the real
 * Cache → WriteQueue → Store path; events/s = E / time until the queue is idle again.
 */
import { Cache } from "../lib/cache/cache.ts";
import { parseWatchLine } from "../lib/cache/response_tap.ts";
import { WriteQueue } from "../lib/cache/write_queue.ts";
import { openStore } from "../lib/store/open_store.ts";
import type { CacheKey } from "../lib/store/store.ts";
import { benchPod } from "./pods.ts";

const enc = new TextEncoder();

export interface PatchResult {
  backend: "sqlite" | "file";
  items: number;
  events: number;
  eventsPerSec: number;
  usPerEvent: number;
}

export async function measureWatchPatching(
  backend: "sqlite" | "file",
  items: number,
  events: number,
): Promise<PatchResult> {
  const dir = await Deno.makeTempDir({ prefix: `bench-patch-${backend}-` });
  const store = await openStore({ backend, dir });
  const queue = new WriteQueue(store, 1 << 30);
  const cache = new Cache(store, queue);
  const key: CacheKey = {
    identity: "cn~system:node:edge-1",
    resource: "core~v1~pods",
    namespace: "bench",
    name: "_list~~json",
  };
  try {
    const pods = Array.from({ length: items }, (_, i) => {
      const p = benchPod("bench", i);
      (p.metadata as Record<string, unknown>).resourceVersion = String(1000 + i);
      return p;
    });
    const listItems = pods
      .map((
        p,
      ): [string, Uint8Array] => [
        `bench/${(p.metadata as { name: string }).name}`,
        enc.encode(JSON.stringify(p)),
      ])
      .sort((a, b) => (a[0] < b[0] ? -1 : 1));
    await store.apply([{
      op: "replaceList",
      key,
      meta: {
        envelope: JSON.stringify({
          kind: "PodList",
          apiVersion: "v1",
          metadata: { resourceVersion: String(1000 + items) },
        }),
        resourceVersion: String(1000 + items),
        contentType: "application/json",
        storedAt: Date.now(),
      },
      items: listItems,
    }]);
    let rv = 1000 + items;
    // The apiserver's serialising is not ours to measure: the event lines are made first, then
    // handled exactly as the proxy's watch tap handles them (parse, raw object bytes, record).
    const lines: string[] = [];
    for (let e = 0; e < events; e++) {
      const pod = pods[(e * 7919) % items];
      const meta = pod.metadata as Record<string, unknown>;
      meta.resourceVersion = String(++rv);
      (meta.annotations as Record<string, string>)["bench/seq"] = String(e);
      lines.push(JSON.stringify({ type: "MODIFIED", object: pod }));
    }
    const started = performance.now();
    for (const line of lines) cache.recordWatchEvent(key, parseWatchLine(line));
    await queue.flush();
    const ms = performance.now() - started;
    const list = await store.getList(key);
    if (!list || list.items.length !== items || list.meta.resourceVersion !== String(rv)) {
      throw new Error(
        `watch patching: list has ${list?.items.length} items at rv ${list?.meta.resourceVersion}, expected ${items} at ${rv}`,
      );
    }
    return { backend, items, events, eventsPerSec: events / (ms / 1000), usPerEvent: ms * 1000 / events };
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
