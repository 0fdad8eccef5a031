/** Unit tests of the cache logic against a real store: list codec, paging chains, watch patching, the write queue, the response tap. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import zlib from "node:zlib";
import type { IncomingMessage } from "node:http";
import { assembleList, itemKeyOf, splitList } from "./list_codec.ts";
import { Cache } from "./cache.ts";
import { WriteQueue } from "./write_queue.ts";
import { tapResponse } from "./response_tap.ts";
import { openStore } from "../store/open_store.ts";
import type { CacheKey, Store, WriteOp } from "../store/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KEY: CacheKey = {
  identity: "cn~system:node:edge-1",
  resource: "core~v1~pods",
  namespace: "default",
  name: "_list",
};

function pod(name: string, rv: number, labels: Record<string, string> = {}) {
  return {
    metadata: { name, namespace: "default", resourceVersion: String(rv), labels },
    spec: { nodeName: "edge-1" },
  };
}

function podList(rv: number, items: unknown[], cont = "") {
  return enc.encode(JSON.stringify({
    kind: "PodList",
    apiVersion: "v1",
    metadata: { resourceVersion: String(rv), ...(cont ? { continue: cont } : {}) },
    items,
  }));
}

async function withCache(fn: (cache: Cache, store: Store) => Promise<void>, bytes = 1 << 24) {
  const dir = await Deno.makeTempDir({ prefix: "cache-test-" });
  const store = await openStore({ backend: "sqlite", dir });
  const cache = new Cache(store, new WriteQueue(store, bytes));
  try {
    await fn(cache, store);
  } finally {
    await cache.queue.flush();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const names = async (cache: Cache) => {
  const list = await cache.getList(KEY);
  return list?.items.map((b) => JSON.parse(dec.decode(b)).metadata.name);
};

Deno.test("list codec: split keeps items by namespace/name and assembling restores a valid list", () => {
  const body = podList(7, [pod("b", 5), pod("a", 6)], "tok");
  const split = splitList(body)!;
  assertEquals(split.items.map(([k]) => k), ["default/a", "default/b"]);
  assertEquals([split.resourceVersion, split.continueToken], ["7", "tok"]);
  const out = JSON.parse(
    dec.decode(assembleList(split.envelope, split.items.map(([, b]) => b), { resourceVersion: "9" })),
  );
  assertEquals(out.kind, "PodList");
  assertEquals(out.metadata, { resourceVersion: "9" }, "continue is dropped, resourceVersion replaced");
  assertEquals(out.items.map((i: { metadata: { name: string } }) => i.metadata.name), ["a", "b"]);
  const empty = JSON.parse(
    dec.decode(assembleList(split.envelope, [], { continue: "x", remainingItemCount: 0 })),
  );
  assertEquals(empty.items, []);
  assertEquals(empty.metadata.continue, "x");
  assertEquals(splitList(enc.encode('{"kind":"Pod"}')), undefined);
  assertEquals(itemKeyOf({ metadata: { name: "n1" } }), "/n1");
});

Deno.test("a paged LIST replaces the cached list only when its last page arrives", async () => {
  await withCache(async (cache) => {
    cache.recordListPage(KEY, podList(5, [pod("old", 1)]), "application/json", "");
    assertEquals(await names(cache), ["old"]);
    cache.recordListPage(KEY, podList(9, [pod("a", 8), pod("b", 8)], "c1"), "application/json", "");
    assertEquals(await names(cache), ["old"], "a first page alone changes nothing");
    cache.recordListPage(KEY, podList(9, [pod("z", 8)], "c2"), "application/json", "wrong-token");
    assertEquals(await names(cache), ["old"], "a page of a chain we did not see is ignored");
    cache.recordListPage(KEY, podList(9, [pod("c", 8)], "c2"), "application/json", "c1");
    cache.recordListPage(KEY, podList(9, [pod("d", 8)]), "application/json", "c2");
    assertEquals(await names(cache), ["a", "b", "c", "d"]);
    const list = await cache.getList(KEY);
    assertEquals(list!.meta.resourceVersion, "9");
    assertEquals(JSON.parse(list!.meta.envelope).metadata.continue, undefined);
  });
});

Deno.test("watch events patch the list one item at a time", async () => {
  await withCache(async (cache, store) => {
    cache.recordListPage(KEY, podList(10, [pod("a", 3), pod("b", 4)]), "application/json", "");
    cache.recordWatchEvent(KEY, {
      type: "ADDED",
      object: { kind: "Pod", apiVersion: "v1", ...pod("c", 11) },
    });
    cache.recordWatchEvent(KEY, { type: "MODIFIED", object: pod("a", 12, { x: "y" }) });
    cache.recordWatchEvent(KEY, { type: "DELETED", object: pod("b", 13) });
    cache.recordWatchEvent(KEY, {
      type: "BOOKMARK",
      object: { kind: "Pod", metadata: { resourceVersion: "20" } },
    });
    cache.recordWatchEvent(KEY, { type: "ERROR", object: { kind: "Status", code: 410 } });
    assertEquals(await names(cache), ["a", "c"]);
    const list = await store.getList(KEY);
    assertEquals(list!.meta.resourceVersion, "20");
    assertEquals(JSON.parse(dec.decode(list!.items[0])).metadata.labels, { x: "y" });
    // Events for a list that was never cached do not invent one.
    const other = { ...KEY, namespace: "kube-system" };
    cache.recordWatchEvent(other, { type: "ADDED", object: pod("x", 30) });
    await cache.queue.idle();
    assertEquals(await store.getList(other), undefined);
  });
});

Deno.test("the write queue is bounded: a full queue drops cache writes and counts them", async () => {
  const written: WriteOp[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const slow = {
    backend: "sqlite",
    apply: async (ops: WriteOp[]) => {
      await gate;
      written.push(ops);
    },
  } as unknown as Store;
  const q = new WriteQueue(slow, 10_000);
  const big = {
    op: "putObject",
    key: KEY,
    value: { body: new Uint8Array(4000), contentType: "application/json", storedAt: 0 },
  } as const;
  assertEquals([q.push(big), q.push(big), q.push(big)], [true, true, false]);
  assertEquals(q.dropped, 1);
  assert(q.bytes > 8000);
  release();
  assert(await q.idle(5000));
  assertEquals(written.flat().length, 2);
  assertEquals(q.bytes, 0);
  assert(q.push(big), "room again once written");
  await q.flush();
});

/** Waits until the stream has been read to its end and the queue has written what it got. */
async function drained(stream: PassThrough, cache: Cache) {
  const ended = once(stream, "end");
  stream.resume();
  await ended;
  await cache.queue.idle();
}

function fakeResponse(status: number, headers: Record<string, string>): IncomingMessage & PassThrough {
  const s = new PassThrough() as unknown as IncomingMessage & PassThrough;
  Object.assign(s, { statusCode: status, headers });
  return s;
}

Deno.test("the tap stores gzip answers decoded, and ignores errors and cut-off bodies", async () => {
  await withCache(async (cache, store) => {
    const body = podList(5, [pod("a", 1), pod("b", 2)]);
    const gz = fakeResponse(200, { "content-type": "application/json", "content-encoding": "gzip" });
    tapResponse(cache, { kind: "list", key: KEY, requestContinue: "" }, gz);
    const zipped = zlib.gzipSync(body);
    gz.write(zipped.subarray(0, 10));
    gz.end(zipped.subarray(10));
    const deadline = Date.now() + 5000;
    while (!(await store.getList(KEY)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assertEquals(await names(cache), ["a", "b"]);

    const objKey = { ...KEY, name: "a" };
    const err = fakeResponse(404, { "content-type": "application/json" });
    tapResponse(cache, { kind: "object", key: objKey, requestContinue: "" }, err);
    err.end(enc.encode('{"kind":"Status"}'));
    await drained(err, cache);
    const proto = fakeResponse(200, { "content-type": "application/vnd.kubernetes.protobuf" });
    tapResponse(cache, { kind: "object", key: objKey, requestContinue: "" }, proto);
    proto.end(new Uint8Array([0x6b, 0x38, 0x73, 0]));
    await drained(proto, cache);
    assertEquals(await store.getObject(objKey), undefined, "only 200 JSON answers are cached");

    const table = fakeResponse(200, { "content-type": "application/json" });
    const tableKey = { ...KEY, name: "_list~table" };
    tapResponse(cache, { kind: "object", key: tableKey, requestContinue: "", wholeListOnly: true }, table);
    table.end(enc.encode(JSON.stringify({ kind: "Table", metadata: { continue: "more" }, rows: [] })));
    await drained(table, cache);
    assertEquals(
      await store.getObject(tableKey),
      undefined,
      "a first page of a paged Table is not the whole list",
    );
  });
});

Deno.test("watch streams are tapped event by event, split across chunks", async () => {
  await withCache(async (cache) => {
    cache.recordListPage(KEY, podList(1, []), "application/json", "");
    const w = fakeResponse(200, { "content-type": "application/json" });
    tapResponse(cache, { kind: "watch", key: KEY, requestContinue: "" }, w);
    const lines = [pod("a", 2), pod("b", 3)].map((o) => JSON.stringify({ type: "ADDED", object: o }) + "\n")
      .join("");
    w.write(lines.slice(0, 17));
    w.write(lines.slice(17, 200));
    w.end(lines.slice(200));
    const deadline = Date.now() + 5000;
    while ((await names(cache))?.length !== 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(await names(cache), ["a", "b"]);
  });
});

Deno.test("a watch event of an unknown type stops the caching of that watch", async () => {
  await withCache(async (cache) => {
    cache.recordListPage(KEY, podList(1, []), "application/json", "");
    const w = fakeResponse(200, { "content-type": "application/json" });
    const progress = { lastRv: "", kind: "", apiVersion: "", partial: false };
    tapResponse(cache, { kind: "watch", key: KEY, requestContinue: "", progress }, w);
    const line = (type: string, o: unknown) => JSON.stringify({ type, object: o }) + "\n";
    w.write(line("ADDED", pod("a", 2)));
    w.write(line("UPSERTED", pod("b", 3)));
    w.end(line("ADDED", pod("c", 4)));
    await drained(w, cache);
    // The list stays as it was before the unknown event: older, never silently missing a change.
    assertEquals(await names(cache), ["a"]);
    assert(progress.partial, "the watch can no longer be carried on after a cut");
    assertEquals(progress.lastRv, "2");
  });
});

Deno.test("eviction removes entries not refreshed for the age, only while online", async () => {
  await withCache(async (cache, store) => {
    let online = false;
    const { Evictor } = await import("./evictor.ts");
    const evictor = new Evictor(store, 60_000, () => online);
    const put = (name: string, storedAt: number) =>
      cache.queue.push({
        op: "putObject",
        key: { ...KEY, name },
        value: { body: enc.encode("{}"), contentType: "application/json", storedAt },
      });
    const now = Date.now();
    put("old", now - 120_000);
    put("fresh", now - 1_000);
    await cache.queue.idle();
    assertEquals(await evictor.runOnce(now), 0, "offline: nothing is evicted");
    assert(await store.getObject({ ...KEY, name: "old" }));
    online = true;
    assertEquals(await evictor.runOnce(now), 1);
    assertEquals(await store.getObject({ ...KEY, name: "old" }), undefined);
    assert(await store.getObject({ ...KEY, name: "fresh" }));
  });
});

Deno.test("raw watch-event bytes are the object exactly as sent", async () => {
  const { rawObject } = await import("./response_tap.ts");
  const obj = { kind: "Pod", metadata: { name: "a", annotations: { x: '{"y":"}"}' } } };
  const line = JSON.stringify({ type: "MODIFIED", object: obj });
  assertEquals(JSON.parse(dec.decode(rawObject(line)!)), obj);
  assertEquals(rawObject('{"object":{},"type":"ADDED"}'), undefined, "another field order is parsed instead");
});

Deno.test("an unchanged object is not written again", async () => {
  await withCache(async (cache) => {
    const k = { ...KEY, name: "n" };
    cache.recordObject(k, enc.encode('{"a":1}'), "application/json");
    cache.recordObject(k, enc.encode('{"a":1}'), "application/json");
    cache.recordObject(k, enc.encode('{"a":2}'), "application/json");
    await cache.queue.idle();
    assertEquals([cache.queue.written, cache.skipped], [2, 1]);
    assertEquals(dec.decode((await cache.getObject(k))!.body), '{"a":2}');
  });
});

Deno.test("lists are split at the byte level, exactly as a full parse would", async () => {
  const pods = JSON.parse(
    await Deno.readTextFile(new URL("../../../shared/k8s-testdata/core.v1.Pod.json", import.meta.url)),
  );
  const tricky = [
    {
      metadata: { name: "z", namespace: "ns", labels: { items: "[{]}" } },
      spec: { containers: [{ args: ['"items":[', "\\\\"] }] },
    },
    { ...pods, metadata: { ...pods.metadata, name: "fixture", namespace: "ns" } },
    { metadata: { name: "a", namespace: "ns", annotations: { "x": "\u00e9\u4e2d\ud83d\ude00" } } },
  ];
  const doc = {
    kind: "PodList",
    apiVersion: "v1",
    metadata: { resourceVersion: "42", continue: "" },
    items: tricky,
    extra: [1, [2]],
  };
  for (const text of [JSON.stringify(doc), JSON.stringify(doc, null, 2)]) {
    const split = splitList(enc.encode(text))!;
    assertEquals(split.items.map(([k]) => k), ["ns/a", "ns/fixture", "ns/z"]);
    const byKey = new Map(tricky.map((t) => [`${t.metadata.namespace}/${t.metadata.name}`, t]));
    for (const [k, raw] of split.items) assertEquals(JSON.parse(dec.decode(raw)), byKey.get(k));
    assertEquals(JSON.parse(split.envelope), {
      kind: "PodList",
      apiVersion: "v1",
      metadata: { resourceVersion: "42", continue: "" },
      extra: [1, [2]],
    });
  }
  assertEquals(splitList(enc.encode('{"kind":"items","items":{}}')), undefined);
  assertEquals(splitList(enc.encode('{"items":[{"metadata":{}}')), undefined, "truncated");
});

Deno.test("in one batch, a list replaced after events keeps its own resourceVersion", async () => {
  await withCache(async (cache, store) => {
    await store.apply([
      {
        op: "replaceList",
        key: KEY,
        meta: {
          envelope: '{"kind":"PodList"}',
          resourceVersion: "5",
          contentType: "application/json",
          storedAt: 1,
        },
        items: [],
      },
      {
        op: "upsertItem",
        key: KEY,
        itemKey: "default/a",
        body: enc.encode('{"metadata":{"name":"a"}}'),
        resourceVersion: "6",
      },
      {
        op: "replaceList",
        key: KEY,
        meta: {
          envelope: '{"kind":"PodList"}',
          resourceVersion: "9",
          contentType: "application/json",
          storedAt: 2,
        },
        items: [],
      },
      {
        op: "upsertItem",
        key: { ...KEY, namespace: "absent" },
        itemKey: "x/b",
        body: enc.encode("{}"),
        resourceVersion: "7",
      },
    ]);
    const list = await cache.getList(KEY);
    assertEquals([list!.meta.resourceVersion, list!.items.length], ["9", 0]);
    await store.apply([
      {
        op: "upsertItem",
        key: KEY,
        itemKey: "default/a",
        body: enc.encode('{"metadata":{"name":"a"}}'),
        resourceVersion: "10",
      },
      { op: "deleteItem", key: KEY, itemKey: "default/a", resourceVersion: "11" },
    ]);
    const after = await cache.getList(KEY);
    assertEquals([after!.meta.resourceVersion, after!.items.length], ["11", 0]);
  });
});

Deno.test("draining a backlog of cache writes lets other work run between batches", async () => {
  let applied = 0;
  // A store whose commits are synchronous, like node:sqlite's: only explicit yields let I/O in.
  const syncStore = {
    backend: "sqlite",
    apply: (ops: WriteOp[]) => {
      applied += ops.length;
      return Promise.resolve();
    },
  } as unknown as Store;
  const q = new WriteQueue(syncStore, 1 << 30);
  const op = { op: "setListVersion", key: KEY, resourceVersion: "1" } as const;
  for (let i = 0; i < 5000; i++) q.push(op);
  const seenAt: number[] = [];
  // Timers queued now must run while the backlog is still being written, not after it.
  await new Promise<void>((resolve) => {
    const tick = () => {
      seenAt.push(applied);
      if (applied < 5000) setTimeout(tick, 0);
      else resolve();
    };
    setTimeout(tick, 0);
  });
  await q.flush();
  assert(seenAt.some((n) => n > 0 && n < 5000), `a timer ran mid-drain (saw ${seenAt.join(",")})`);
});

Deno.test("watch lines are read without a full parse in the apiserver's field order, and agree with a full parse", async () => {
  const { parseWatchLine } = await import("./response_tap.ts");
  const { itemKeyOf } = await import("./list_codec.ts");
  const objects = [
    {
      kind: "Pod",
      apiVersion: "v1",
      metadata: { name: "a", namespace: "ns", uid: "u1", resourceVersion: "7", labels: { x: "y" } },
      spec: {},
    },
    {
      kind: "Pod",
      apiVersion: "v1",
      metadata: {
        name: "b-x",
        generateName: "b-",
        namespace: "ns",
        selfLink: "/x",
        uid: "u",
        resourceVersion: "8",
      },
    },
    { kind: "Node", apiVersion: "v1", metadata: { name: "edge-1", uid: "u", resourceVersion: "9" } },
    {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { namespace: "ns", name: "reordered", resourceVersion: "10" },
    },
    { kind: "Pod", apiVersion: "v1", metadata: { name: 'q"uote', namespace: "ns", resourceVersion: "11" } },
    { kind: "Pod", apiVersion: "v1", metadata: { resourceVersion: "12" } },
  ];
  for (const [i, obj] of objects.entries()) {
    const type = ["ADDED", "MODIFIED", "DELETED", "MODIFIED", "ADDED", "BOOKMARK"][i];
    const line = JSON.stringify({ type, object: obj });
    const ev = parseWatchLine(line);
    assertEquals(ev.type, type);
    assertEquals(ev.itemKey ?? itemKeyOf(ev.object), itemKeyOf(obj), line);
    assertEquals(
      ev.resourceVersion ?? (ev.object as typeof obj).metadata.resourceVersion,
      obj.metadata.resourceVersion,
    );
    assertEquals(JSON.parse(dec.decode(ev.raw!)), obj);
  }
  // Numbers keep their exact digits: the object's bytes are the upstream's, not a re-serialisation.
  const big =
    '{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"n","generation":12345678901234567890}}}';
  assertEquals(dec.decode(parseWatchLine(big).raw!), big.slice(25, -1));
});

Deno.test("watch lines that are not one whole event are refused", async () => {
  const { parseWatchLine, rawObject } = await import("./response_tap.ts");
  const bad = [
    // The event object lacks its closing brace: once stored with one brace stripped.
    '{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"},"data":{"x":"y"}}',
    '{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}}',
    '{"type":"ADDED","object":[1,2]}',
    '{"type":"ADDED","object":"x"}',
    '{"type":"ADDED","object":{"kind":"Pod","metadata":{"resourceVersion":"5"}}}', // no name
    '{"type":"ADDED"}',
    "[]",
    "garbage",
  ];
  for (const line of bad) {
    let threw = false;
    try {
      parseWatchLine(line);
    } catch {
      threw = true;
    }
    assert(threw, line);
  }
  // Fields after the object: the raw slice would not be one object, so it is serialised again.
  const extra = '{"type":"ADDED","object":{"metadata":{"name":"a"}},"x":{"y":1}}';
  assertEquals(rawObject(extra), undefined);
  assertEquals(JSON.parse(dec.decode(parseWatchLine(extra).raw!)), { metadata: { name: "a" } });
});

Deno.test("lists with non-object, nameless or repeated items, or bad separators, are not split", () => {
  const list = (items: string) => enc.encode(`{"kind":"PodList","metadata":{},"items":[${items}]}`);
  const a = '{"metadata":{"name":"a"}}', b = '{"metadata":{"name":"b"}}';
  assertEquals(splitList(list(`${a},${b}`))?.items.length, 2);
  assertEquals(splitList(list(` ${a} , ${b} `))?.items.length, 2);
  assertEquals(splitList(list(""))?.items.length, 0);
  for (
    const items of [
      `${a},1,${b}`,
      `${a},"x"`,
      `null,${a}`,
      `${a},[${b}]`,
      `${a}${b}`,
      `${a},,${b}`,
      `${a},`,
      `,${a}`,
      `${a},{"metadata":{}}`,
      `${a},${a}`,
    ]
  ) {
    assertEquals(splitList(list(items)), undefined, items);
  }
});

Deno.test("a watch line over the limit stops the caching of that watch, not the stream", async () => {
  const { LineSplitter } = await import("./line_splitter.ts");
  const got: string[] = [];
  let overflow = 0;
  const s = new LineSplitter(10, (l) => got.push(l), (n) => overflow = n);
  s.push(enc.encode("abc\nde"));
  s.push(enc.encode("f\n0123456789\n"));
  assertEquals([got, overflow], [["abc", "def", "0123456789"], 0]);
  s.push(enc.encode("01234"));
  s.push(enc.encode("567890"));
  assertEquals(overflow, 11);
  s.push(enc.encode("\nlater\n"));
  assertEquals(got.length, 3, "nothing after an overflow");

  await withCache(async (cache) => {
    cache.limits.maxWatchEventBytes = 200;
    cache.recordListPage(KEY, podList(1, []), "application/json", "");
    const w = fakeResponse(200, { "content-type": "application/json" });
    tapResponse(cache, { kind: "watch", key: KEY, requestContinue: "" }, w);
    const line = (o: unknown) => JSON.stringify({ type: "ADDED", object: o }) + "\n";
    w.write(line(pod("a", 2)));
    w.write(line({ ...pod("huge", 3), data: "x".repeat(500) }));
    w.end(line(pod("c", 4)));
    await drained(w, cache);
    assertEquals(await names(cache), ["a"], "the list stays as it was before the oversized event");
  });
});
