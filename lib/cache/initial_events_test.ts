import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { PassThrough } from "node:stream";
import { InitialEventsCollector } from "./initial_events.ts";
import { parseWatchLine, type TappedResponse, tapResponse } from "./response_tap.ts";
import { Cache } from "./cache.ts";
import { WriteQueue } from "./write_queue.ts";
import { openStore } from "../store/open_store.ts";
import type { CacheKey } from "../store/store.ts";

const dec = new TextDecoder();
const pod = (name: string, rv: string) => ({
  kind: "Pod",
  apiVersion: "v1",
  metadata: { name, namespace: "default", resourceVersion: rv },
});
const line = (type: string, object: unknown) => JSON.stringify({ type, object });
const end = (rv: string) =>
  line("BOOKMARK", {
    kind: "Pod",
    apiVersion: "v1",
    metadata: { resourceVersion: rv, annotations: { "k8s.io/initial-events-end": "true" } },
  });
const names = (items: Array<[string, Uint8Array]>) => items.map(([k]) => k);

Deno.test("initial events: a complete list at the end bookmark's version", () => {
  const c = new InitialEventsCollector(1 << 20);
  for (const l of [line("ADDED", pod("b", "5")), line("ADDED", pod("a", "7"))]) {
    assertEquals(c.add(parseWatchLine(l)).state, "collecting");
  }
  // A progress bookmark without the annotation does not end them.
  assertEquals(
    c.add(parseWatchLine(line("BOOKMARK", { kind: "Pod", metadata: { resourceVersion: "8" } }))).state,
    "collecting",
  );
  const step = c.add(parseWatchLine(end("9")));
  if (step.state !== "complete") throw new Error(`expected complete, got ${step.state}`);
  assertEquals(step.snapshot.resourceVersion, "9");
  assertEquals(JSON.parse(step.snapshot.envelope), {
    kind: "PodList",
    apiVersion: "v1",
    metadata: { resourceVersion: "9" },
  });
  assertEquals(names(step.snapshot.items), ["default/a", "default/b"]);
  assertEquals(JSON.parse(dec.decode(step.snapshot.items[0][1])).metadata.name, "a");
});

Deno.test("initial events: an empty collection, a byte bound, an ERROR", () => {
  const empty = new InitialEventsCollector(1 << 20).add(parseWatchLine(end("3")));
  assertEquals(empty.state === "complete" && empty.snapshot.items, []);
  const small = new InitialEventsCollector(150);
  assertEquals(small.add(parseWatchLine(line("ADDED", pod("a", "1")))).state, "collecting");
  assertEquals(small.add(parseWatchLine(line("ADDED", pod("b", "2")))).state, "abandoned");
  const err = new InitialEventsCollector(1 << 20);
  assertEquals(err.add(parseWatchLine(line("ERROR", { kind: "Status", code: 410 }))).state, "abandoned");
});

/** A tapped upstream watch answer whose lines the test writes. */
function upstream(): PassThrough & TappedResponse {
  const s = new PassThrough() as PassThrough & TappedResponse;
  s.statusCode = 200;
  s.headers = { "content-type": "application/json" };
  return s;
}

Deno.test("tap: a watch-list's initial events replace the cached list; later events patch it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "initial-events-" });
  const store = await openStore({ backend: "sqlite", dir });
  try {
    const cache = new Cache(store, new WriteQueue(store, 8 << 20));
    const key: CacheKey = { identity: "cn~x", resource: "core~v1~pods", namespace: "default", name: "_list" };
    // An older list holds a pod that no longer exists: the snapshot must not keep it.
    cache.recordListPage(
      key,
      new TextEncoder().encode(
        JSON.stringify({
          kind: "PodList",
          apiVersion: "v1",
          metadata: { resourceVersion: "2" },
          items: [pod("gone", "1")],
        }),
      ),
      "application/json",
      "",
    );
    const plan = { kind: "watch" as const, key, requestContinue: "", initialEvents: true };
    const res = upstream();
    tapResponse(cache, plan, res);
    res.write(line("ADDED", pod("a", "5")) + "\n" + line("ADDED", pod("b", "6")) + "\n");
    // Before the end bookmark nothing replaced the old list.
    assertEquals((await cache.getList(key))?.itemKeys, ["default/gone"]);
    res.write(end("9") + "\n");
    let list = await cache.getList(key);
    assertEquals([list?.meta.resourceVersion, list?.itemKeys], ["9", ["default/a", "default/b"]]);
    res.write(line("DELETED", pod("a", "10")) + "\n" + line("ADDED", pod("c", "11")) + "\n");
    list = await cache.getList(key);
    assertEquals([list?.meta.resourceVersion, list?.itemKeys], ["11", ["default/b", "default/c"]]);
    res.end();
    // The same plan tapped again (a resumed watch): no initial events, events patch at once.
    assertEquals(plan.initialEvents, false);
    const resumed = upstream();
    tapResponse(cache, plan, resumed);
    resumed.write(line("ADDED", pod("d", "12")) + "\n");
    assertEquals((await cache.getList(key))?.itemKeys, ["default/b", "default/c", "default/d"]);
    resumed.end();
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tap: a watch-list cut before its end bookmark leaves the cached list as it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "initial-events-" });
  const store = await openStore({ backend: "file", dir });
  try {
    const cache = new Cache(store, new WriteQueue(store, 8 << 20));
    const key: CacheKey = { identity: "cn~x", resource: "core~v1~pods", namespace: "default", name: "_list" };
    const res = upstream();
    tapResponse(cache, { kind: "watch", key, requestContinue: "", initialEvents: true }, res);
    res.write(line("ADDED", pod("a", "5")) + "\n");
    res.emit("aborted");
    res.end();
    assertEquals(await cache.getList(key), undefined);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
