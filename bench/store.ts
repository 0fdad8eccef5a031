/**
 * `deno task bench:store`: the two cache backends side by side on this disk: replacing a
 * 5,000-item list (2 KB items), replacing it again over itself, reading it back, and one durable
 * watch-event upsert. Printed, not asserted: the figures behind the README's choice of SQLite.
 */
import { join } from "node:path";
import { configureLog } from "../lib/log.ts";
import { removeTree } from "../lib/store/file_store.ts";
import { openStore } from "../lib/store/open_store.ts";
import type { CacheKey, ListMeta } from "../lib/store/store.ts";

const ITEMS = 5000;
const UPSERTS = 100;

function meta(rv: string): ListMeta {
  return {
    envelope: JSON.stringify({ kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: rv } }),
    resourceVersion: rv,
    contentType: "application/json",
    storedAt: Date.now(),
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

configureLog({ level: "warn", format: "text" });
const key: CacheKey = {
  identity: "cn~system:node:edge-1",
  resource: "core~v1~pods",
  namespace: "default",
  name: "_list~",
};
const body = new TextEncoder().encode("x".repeat(2048));
const items: Array<[string, Uint8Array]> = Array.from({ length: ITEMS }, (_, i) => [`ns/pod-${i}`, body]);

for (const backend of ["sqlite", "file"] as const) {
  const dir = await Deno.makeTempDir({ prefix: `bench-store-${backend}-` });
  const store = await openStore({ backend, dir: join(dir, "cache") });
  try {
    const replace = () => store.apply([{ op: "replaceList", key, meta: meta("1"), items }]);
    const replaceMs = await timed(replace);
    let got = 0;
    const getMs = await timed(async () => got = (await store.getList(key))?.items.length ?? 0);
    if (got !== ITEMS) throw new Error(`${backend}: read back ${got} items, not ${ITEMS}`);
    const againMs = await timed(replace);
    const upsertMs = await timed(async () => {
      for (let i = 0; i < UPSERTS; i++) {
        await store.apply([{
          op: "upsertItem",
          key,
          itemKey: `ns/pod-${i * 37}`,
          body,
          resourceVersion: String(i + 2),
        }]);
      }
    }) / UPSERTS;
    console.log(
      `${backend}: replaceList ${ITEMS}x2KB ${replaceMs.toFixed(0)} ms, again over it ${
        againMs.toFixed(0)
      } ms; ` +
        `getList ${getMs.toFixed(0)} ms; upsertItem ${upsertMs.toFixed(2)} ms each`,
    );
  } finally {
    await store.close();
    await removeTree(dir);
  }
}
