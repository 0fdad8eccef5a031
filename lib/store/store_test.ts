/**
 * One behavioural suite for the Store contract, run against both backends, plus backend-specific
 * corruption handling. (The backends' speed is measured by `deno task bench:store`.)
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ConfigError } from "../config/errors.ts";
import { configureLog } from "../log.ts";
import { removeTree } from "./file_store.ts";
import { openStore } from "./open_store.ts";
import type { CacheKey, ListMeta, Store } from "./store.ts";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import type { IncomingMessage } from "node:http";
import { Cache } from "../cache/cache.ts";
import { WriteQueue } from "../cache/write_queue.ts";
import type { CachePlan } from "../cache/cache_plan.ts";
import { tapResponse } from "../cache/response_tap.ts";

type Backend = "sqlite" | "file";
const BACKENDS: Backend[] = ["sqlite", "file"];
const enc = new TextEncoder();
const dec = new TextDecoder();

function key(name: string, over: Partial<CacheKey> = {}): CacheKey {
  return { identity: "cn~system:node:edge-1", resource: "core~v1~pods", namespace: "default", name, ...over };
}

function meta(rv: string, storedAt = Date.now()): ListMeta {
  return {
    envelope: JSON.stringify({ kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: rv } }),
    resourceVersion: rv,
    contentType: "application/json",
    storedAt,
  };
}

/** Awaits a rejection of class `cls` and returns the error. */
async function assertRejects(fn: () => Promise<unknown>, cls: new (...a: never[]) => Error): Promise<Error> {
  let caught: unknown;
  await rejects(async () => {
    try {
      await fn();
    } catch (e) {
      caught = e;
      throw e;
    }
  }, cls);
  return caught as Error;
}

function texts(items: Uint8Array[]): string[] {
  return items.map((b) => dec.decode(b));
}

/** Runs `fn` with a fresh store in a fresh temp dir, then closes and removes everything. */
async function withStore(backend: Backend, fn: (store: Store, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: `store-${backend}-` });
  const store = await openStore({ backend, dir: join(dir, "cache") });
  try {
    await fn(store, join(dir, "cache"));
  } finally {
    await store.close();
    await removeTree(dir);
  }
}

/** Runs `fn` with warnings captured instead of printed. */
async function captureWarnings<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  configureLog({ sink: (l) => lines.push(l) });
  try {
    return { result: await fn(), lines };
  } finally {
    configureLog({ sink: (l) => console.error(l) });
  }
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function walkFiles(dir: string): Promise<{ path: string; isDir: boolean }[]> {
  const out: { path: string; isDir: boolean }[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    out.push({ path: p, isDir: e.isDirectory });
    if (e.isDirectory) out.push(...await walkFiles(p));
  }
  return out;
}

for (const backend of BACKENDS) {
  Deno.test(`${backend}: put, get and delete objects`, () =>
    withStore(backend, async (store) => {
      assertEquals(store.backend, backend);
      assertEquals(await store.getObject(key("a")), undefined);
      const value = { body: enc.encode('{"kind":"Pod"}'), contentType: "application/json", storedAt: 1000 };
      await store.apply([{ op: "putObject", key: key("a"), value }]);
      assertEquals(await store.getObject(key("a")), value);
      const v2 = {
        body: new Uint8Array([0, 1, 2, 255]),
        contentType: "application/vnd.kubernetes.protobuf",
        storedAt: 2000,
      };
      await store.apply([{ op: "putObject", key: key("a"), value: v2 }]);
      assertEquals(await store.getObject(key("a")), v2);
      const empty = { body: new Uint8Array(), contentType: "text/plain", storedAt: 3 };
      await store.apply([{ op: "putObject", key: key("empty"), value: empty }]);
      assertEquals(await store.getObject(key("empty")), empty);
      await store.apply([{ op: "deleteObject", key: key("a") }, { op: "deleteObject", key: key("never") }]);
      assertEquals(await store.getObject(key("a")), undefined);
      assertEquals(await store.getList(key("a")), undefined);
    }));

  Deno.test(`${backend}: lists are replaced atomically, patched per item and ordered`, () =>
    withStore(backend, async (store) => {
      const lk = key("_list~~json");
      assertEquals(await store.getList(lk), undefined);
      const m = meta("10");
      await store.apply([{
        op: "replaceList",
        key: lk,
        meta: m,
        items: [["default/c", enc.encode("c1")], ["default/a", enc.encode("a1")], [
          "kube-system/b",
          enc.encode("b1"),
        ]],
      }]);
      let list = await store.getList(lk);
      assertEquals(list?.meta, m);
      assertEquals(texts(list!.items), ["a1", "c1", "b1"]);
      assertEquals(list!.itemKeys, ["default/a", "default/c", "kube-system/b"]);

      const before = Date.now();
      await store.apply([
        { op: "upsertItem", key: lk, itemKey: "default/b", body: enc.encode("b2"), resourceVersion: "11" },
        { op: "upsertItem", key: lk, itemKey: "default/a", body: enc.encode("a2"), resourceVersion: "12" },
        { op: "deleteItem", key: lk, itemKey: "default/c", resourceVersion: "13" },
        { op: "deleteItem", key: lk, itemKey: "default/missing", resourceVersion: "14" },
      ]);
      list = await store.getList(lk);
      assertEquals(texts(list!.items), ["a2", "b2", "b1"]);
      assertEquals(list!.itemKeys, ["default/a", "default/b", "kube-system/b"]);
      assertEquals(list!.meta.resourceVersion, "14");
      assertEquals(list!.meta.envelope, m.envelope);
      assert(list!.meta.storedAt >= before, "a patch refreshes storedAt");

      await store.apply([{ op: "setListVersion", key: lk, resourceVersion: "20" }]);
      assertEquals((await store.getList(lk))!.meta.resourceVersion, "20");
      assertEquals(texts((await store.getList(lk))!.items), ["a2", "b2", "b1"]);

      // A relist drops every old item.
      await store.apply([{
        op: "replaceList",
        key: lk,
        meta: meta("30"),
        items: [["x/y", enc.encode("y")]],
      }]);
      list = await store.getList(lk);
      assertEquals(texts(list!.items), ["y"]);
      assertEquals(list!.meta.resourceVersion, "30");
      await store.apply([{ op: "replaceList", key: lk, meta: meta("31"), items: [] }]);
      assertEquals((await store.getList(lk))!.items, []);

      // Odd item keys (cluster-scoped, long, non-ASCII) round-trip and keep their order.
      const long = "ns/" + "n".repeat(400);
      await store.apply([{
        op: "replaceList",
        key: lk,
        meta: meta("40"),
        items: [[long, enc.encode("long")], ["/node-1", enc.encode("node")], ["ns/ü.x", enc.encode("u")]],
      }]);
      await store.apply([{
        op: "upsertItem",
        key: lk,
        itemKey: long,
        body: enc.encode("long2"),
        resourceVersion: "41",
      }]);
      assertEquals(texts((await store.getList(lk))!.items), ["node", "long2", "u"]);
      assertEquals((await store.getList(lk))!.itemKeys, ["/node-1", long, "ns/ü.x"]);
    }));

  Deno.test(`${backend}: one list item, or the list's meta, is read alone`, () =>
    withStore(backend, async (store) => {
      const lk = key("_list~~json");
      assertEquals(await store.getListItem(lk, "default/a"), undefined, "no list");
      const m = meta("10");
      await store.apply([{
        op: "replaceList",
        key: lk,
        meta: m,
        items: [["default/a", enc.encode("a1")], ["default/b%2Fc", enc.encode("bc1")]],
      }]);
      assertEquals(await store.getListMeta(lk), m);
      assertEquals(await store.getListMeta(key("_list~other")), undefined);
      const a = await store.getListItem(lk, "default/a");
      assertEquals([a?.meta, dec.decode(a!.body)], [m, "a1"]);
      assertEquals(dec.decode((await store.getListItem(lk, "default/b%2Fc"))!.body), "bc1");
      assertEquals(await store.getListItem(lk, "default/zz"), undefined, "no such item");
      await store.apply([{
        op: "upsertItem",
        key: lk,
        itemKey: "default/a",
        body: enc.encode("a2"),
        resourceVersion: "11",
      }]);
      const a2 = await store.getListItem(lk, "default/a");
      assertEquals([a2?.meta.resourceVersion, dec.decode(a2!.body)], ["11", "a2"]);
      await store.apply([{ op: "deleteItem", key: lk, itemKey: "default/a", resourceVersion: "12" }]);
      assertEquals(await store.getListItem(lk, "default/a"), undefined, "deleted");
    }));

  Deno.test(`${backend}: patches of an absent list are no-ops`, () =>
    withStore(backend, async (store) => {
      const lk = key("_list~~json");
      await store.apply([
        { op: "upsertItem", key: lk, itemKey: "default/a", body: enc.encode("a"), resourceVersion: "2" },
        { op: "deleteItem", key: lk, itemKey: "default/a", resourceVersion: "3" },
        { op: "setListVersion", key: lk, resourceVersion: "4" },
      ]);
      assertEquals(await store.getList(lk), undefined);
      assertEquals(await store.entries(), []);
    }));

  Deno.test(`${backend}: identities never collide`, () =>
    withStore(backend, async (store) => {
      const a = key("p", { identity: "cn~alice" });
      const b = key("p", { identity: "token~0123abcd" });
      const la = key("_list~", { identity: "cn~alice" });
      const lb = key("_list~", { identity: "token~0123abcd" });
      await store.apply([
        { op: "putObject", key: a, value: { body: enc.encode("alice"), contentType: "x", storedAt: 1 } },
        { op: "putObject", key: b, value: { body: enc.encode("bob"), contentType: "x", storedAt: 1 } },
        { op: "replaceList", key: la, meta: meta("1"), items: [["d/p", enc.encode("alice")]] },
      ]);
      await store.apply([
        { op: "upsertItem", key: lb, itemKey: "d/q", body: enc.encode("bob"), resourceVersion: "2" },
      ]);
      assertEquals(dec.decode((await store.getObject(a))!.body), "alice");
      assertEquals(dec.decode((await store.getObject(b))!.body), "bob");
      assertEquals(texts((await store.getList(la))!.items), ["alice"]);
      assertEquals(await store.getList(lb), undefined);
      assertEquals((await store.entries({ identity: "cn~alice" })).length, 2);
      assertEquals((await store.entries({ identity: "token~0123abcd" })).length, 1);
    }));

  Deno.test(`${backend}: entries with filters, counts and bytes; eviction by age`, () =>
    withStore(backend, async (store) => {
      const pods = key("_list~~json");
      const cms = key("_list~~json", { resource: "core~v1~configmaps" });
      const other = key("_list~~json", { identity: "cn~other" });
      const items: Array<[string, Uint8Array]> = [["default/a", new Uint8Array(100)], [
        "default/b",
        new Uint8Array(50),
      ]];
      await store.apply([
        {
          op: "putObject",
          key: key("a"),
          value: { body: new Uint8Array(300), contentType: "x", storedAt: 1000 },
        },
        { op: "replaceList", key: pods, meta: meta("1", 2000), items },
        { op: "replaceList", key: cms, meta: meta("1", 3000), items: items.slice(0, 1) },
        { op: "replaceList", key: other, meta: meta("1", 500), items: [] },
      ]);
      const all = await store.entries();
      assertEquals(all.length, 4);
      const find = (k: CacheKey, kind: string) =>
        all.find((e) => e.kind === kind && JSON.stringify(e.key) === JSON.stringify(k))!;
      const obj = find(key("a"), "object");
      assertEquals([obj.count, obj.bytes, obj.storedAt], [1, 300, 1000]);
      const pl = find(pods, "list");
      assertEquals([pl.count, pl.storedAt], [2, 2000]);
      // Bytes count the bodies (the file backend adds its small record headers).
      assert(pl.bytes >= 150 && pl.bytes < 150 + meta("1").envelope.length + 1024, `list bytes ${pl.bytes}`);
      assertEquals(find(other, "list").count, 0);

      assertEquals((await store.entries({ identity: "cn~system:node:edge-1" })).length, 3);
      const onlyPods = await store.entries({ identity: "cn~system:node:edge-1", resource: "core~v1~pods" });
      assertEquals(onlyPods.map((e) => e.kind).sort(), ["list", "object"]);
      assertEquals((await store.entries({ resource: "core~v1~configmaps" })).length, 1);
      assertEquals(await store.entries({ identity: "nobody" }), []);

      assertEquals(await store.evictOlderThan(1500), 2); // The object (1000) and the other list (500).
      assertEquals(await store.getObject(key("a")), undefined);
      assertEquals(await store.getList(other), undefined);
      assertEquals((await store.getList(pods))!.items.length, 2);
      assertEquals(await store.evictOlderThan(1500), 0);
      assertEquals(await store.evictOlderThan(Date.now() + 1), 2);
      assertEquals(await store.entries(), []);
      // The store is still writable after evicting everything (pruned directories are recreated).
      await store.apply([{ op: "replaceList", key: pods, meta: meta("2"), items }]);
      assertEquals((await store.getList(pods))!.items.length, 2);
    }));

  Deno.test(`${backend}: no torn or invalid entry is ever stored (torn watch line, garbled body, bad items)`, () =>
    withStore(backend, async (store) => {
      const cache = new Cache(store, new WriteQueue(store, 1 << 24));
      const list = key("_list");
      const podJson = (name: string, rv: number) =>
        JSON.stringify({
          kind: "Pod",
          metadata: { name, namespace: "default", resourceVersion: String(rv) },
        });
      const answer = (status: number) => {
        const s = new PassThrough() as unknown as IncomingMessage & PassThrough;
        Object.assign(s, { statusCode: status, headers: { "content-type": "application/json" } });
        return s;
      };
      const feed = async (plan: CachePlan, body: string) => {
        const res = answer(200);
        tapResponse(cache, plan, res);
        const ended = once(res, "end");
        res.end(enc.encode(body));
        res.resume();
        await ended;
        await cache.queue.idle();
      };
      await feed(
        { kind: "list", key: list, requestContinue: "" },
        `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[${
          podJson("a", 1)
        }]}`,
      );
      // A watch whose second event lacks its closing brace, then a good one: neither after the torn one is kept.
      await feed(
        { kind: "watch", key: list, requestContinue: "" },
        `{"type":"ADDED","object":${podJson("b", 2)}}\n` +
          `{"type":"ADDED","object":${podJson("torn", 3).slice(0, -1)}}\n` +
          `{"type":"ADDED","object":${podJson("c", 4)}}\n`,
      );
      // A complete 200 that is not JSON, and one that is cut in the middle of an object.
      await feed({ kind: "object", key: key("garbled"), requestContinue: "" }, "<html>oops</html>");
      await feed({ kind: "object", key: key("cut"), requestContinue: "" }, podJson("cut", 5).slice(0, 20));
      // A list whose items are not all objects: once the bad items vanished silently.
      await feed(
        { kind: "list", key: key("_list~l=x"), requestContinue: "" },
        `{"kind":"PodList","metadata":{"resourceVersion":"6"},"items":[${podJson("d", 6)},42,"x"]}`,
      );
      assertEquals(await store.getObject(key("garbled")), undefined);
      assertEquals(await store.getObject(key("cut")), undefined);
      assertEquals(await store.getList(key("_list~l=x")), undefined);
      const kept = await store.getList(list);
      assertEquals(kept!.itemKeys, ["default/a", "default/b"]);
      // Every stored byte is whole JSON.
      for (const e of await store.entries()) {
        if (e.kind === "object") JSON.parse(dec.decode((await store.getObject(e.key))!.body));
        else {
          const l = (await store.getList(e.key))!;
          JSON.parse(l.meta.envelope);
          for (const item of l.items) assert(typeof JSON.parse(dec.decode(item)) === "object");
        }
      }
      await cache.queue.flush();
    }));

  Deno.test(`${backend}: files are private (0600) and directories 0700`, () =>
    withStore(backend, async (store, dir) => {
      await store.apply([
        { op: "putObject", key: key("a"), value: { body: enc.encode("x"), contentType: "x", storedAt: 1 } },
        { op: "replaceList", key: key("_list~"), meta: meta("1"), items: [["d/a", enc.encode("a")]] },
      ]);
      await store.apply([{
        op: "upsertItem",
        key: key("_list~"),
        itemKey: "d/b",
        body: enc.encode("b"),
        resourceVersion: "2",
      }]);
      assertEquals(await mode(dir), 0o700);
      const all = await walkFiles(dir);
      if (backend === "sqlite") {
        for (const f of ["cache.db", "cache.db-wal", "cache.db-shm"]) {
          assertEquals(await mode(join(dir, f)), 0o600, f);
        }
      } else {
        assert(all.filter((f) => !f.isDir).length >= 5, "object, pointer, meta and two items");
      }
      for (const f of all) assertEquals(await mode(f.path), f.isDir ? 0o700 : 0o600, f.path);
    }));

  Deno.test(`${backend}: data survives close and reopen`, async () => {
    const dir = await Deno.makeTempDir({ prefix: `store-${backend}-` });
    try {
      let store = await openStore({ backend, dir });
      await store.apply([
        { op: "putObject", key: key("a"), value: { body: enc.encode("a"), contentType: "x", storedAt: 5 } },
        { op: "replaceList", key: key("_list~"), meta: meta("7", 6), items: [["d/a", enc.encode("a")]] },
      ]);
      await store.apply([{
        op: "upsertItem",
        key: key("_list~"),
        itemKey: "d/b",
        body: enc.encode("b"),
        resourceVersion: "8",
      }]);
      await store.close();
      store = await openStore({ backend, dir });
      try {
        assertEquals(dec.decode((await store.getObject(key("a")))!.body), "a");
        const list = (await store.getList(key("_list~")))!;
        assertEquals(texts(list.items), ["a", "b"]);
        assertEquals(list.meta.resourceVersion, "8");
      } finally {
        await store.close();
      }
    } finally {
      await removeTree(dir);
    }
  });

  Deno.test(`${backend}: concurrent readers see a whole list during replaces and patches`, () =>
    withStore(backend, async (store) => {
      const lk = key("_list~");
      const gen = (g: number): Array<[string, Uint8Array]> =>
        Array.from({ length: 40 }, (_, i) => [`d/i${String(i).padStart(2, "0")}`, enc.encode(`g${g}`)]);
      await store.apply([{ op: "replaceList", key: lk, meta: meta("0"), items: gen(0) }]);
      let writing = true;
      const writer = (async () => {
        for (let g = 1; g <= 15 && writing; g++) {
          await store.apply([{ op: "replaceList", key: lk, meta: meta(String(g)), items: gen(g) }]);
        }
      })().finally(() => writing = false);
      try {
        let reads = 0;
        while (writing || reads === 0) {
          const list = (await store.getList(lk))!;
          const seen = new Set(texts(list.items));
          assertEquals(list.items.length, 40);
          assertEquals(seen.size, 1, `one generation per read, got ${[...seen]}`);
          assertEquals([...seen][0], `g${list.meta.resourceVersion}`);
          reads++;
        }
      } finally {
        writing = false;
        await writer;
      }
    }));

  Deno.test(`${backend}: openStore refuses an unusable directory`, async () => {
    const dir = await Deno.makeTempDir({ prefix: `store-${backend}-` });
    try {
      await Deno.writeTextFile(join(dir, "file"), "x");
      const err = await assertRejects(() => openStore({ backend, dir: join(dir, "file") }), ConfigError);
      assert(!String(err).includes("\n"));
      if (Deno.uid() !== 0) {
        await Deno.mkdir(join(dir, "ro"), { mode: 0o500 });
        await assertRejects(() => openStore({ backend, dir: join(dir, "ro") }), ConfigError);
      }
      // A group/world-readable existing dir is tightened.
      await Deno.mkdir(join(dir, "open"));
      await Deno.chmod(join(dir, "open"), 0o755);
      await (await openStore({ backend, dir: join(dir, "open") })).close();
      assertEquals(await mode(join(dir, "open")), 0o700);
    } finally {
      await removeTree(dir);
    }
  });
}

// ---- corruption ---------------------------------------------------------------------------------

Deno.test("sqlite: a garbage cache.db is reported, moved aside and replaced by an empty cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-sqlite-" });
  try {
    const s1 = await openStore({ backend: "sqlite", dir });
    await s1.apply([{
      op: "putObject",
      key: key("a"),
      value: { body: enc.encode("a"), contentType: "x", storedAt: 1 },
    }]);
    await s1.close();
    const garbage = crypto.getRandomValues(new Uint8Array(8192));
    await Deno.writeFile(join(dir, "cache.db"), garbage);
    await Deno.remove(join(dir, "cache.db-wal")).catch(() => {});
    const { result: store, lines } = await captureWarnings(() => openStore({ backend: "sqlite", dir }));
    try {
      assertEquals(lines.length, 1, lines.join("\n"));
      assert(/WARN.*damaged.*movedTo=.*cache\.db\.corrupt-/.test(lines[0]), lines[0]);
      assertEquals(await store.getObject(key("a")), undefined);
      await store.apply([{
        op: "putObject",
        key: key("b"),
        value: { body: enc.encode("b"), contentType: "x", storedAt: 1 },
      }]);
      assertEquals(dec.decode((await store.getObject(key("b")))!.body), "b");
      const names = [...Deno.readDirSync(dir)].map((e) => e.name);
      const aside = names.find((n) => n.startsWith("cache.db.corrupt-"));
      assert(aside, names.join(","));
      assertEquals(await Deno.readFile(join(dir, aside!)), garbage);
    } finally {
      await store.close();
    }
  } finally {
    await removeTree(dir);
  }
});

Deno.test("sqlite: damaged pages found at run time are recovered from, not fatal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-sqlite-" });
  try {
    const s1 = await openStore({ backend: "sqlite", dir });
    const items: Array<[string, Uint8Array]> = Array.from(
      { length: 200 },
      (_, i) => [`d/${i}`, new Uint8Array(2000)],
    );
    await s1.apply([{ op: "replaceList", key: key("_list~"), meta: meta("1"), items }]);
    await s1.close(); // Checkpoints the WAL into cache.db.
    const db = await Deno.open(join(dir, "cache.db"), { read: true, write: true });
    const size = (await db.stat()).size;
    await db.seek(4096 * 3, Deno.SeekMode.Start); // Keep page 1 (the header and schema) intact.
    await db.write(crypto.getRandomValues(new Uint8Array(Math.min(65536, size - 4096 * 3))));
    db.close();
    const { result: list, lines } = await captureWarnings(async () => {
      const store = await openStore({ backend: "sqlite", dir });
      try {
        return await store.getList(key("_list~"));
      } finally {
        await store.close();
      }
    });
    assertEquals(list, undefined);
    assert(lines.some((l) => l.includes("damaged")), lines.join("\n"));
  } finally {
    await removeTree(dir);
  }
});

Deno.test("sqlite: a foreign SQLite database is a ConfigError, left untouched", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-sqlite-" });
  try {
    const db = new DatabaseSync(join(dir, "cache.db"));
    db.exec("CREATE TABLE precious(x); INSERT INTO precious VALUES (1)");
    db.close();
    const err = await assertRejects(() => openStore({ backend: "sqlite", dir }), ConfigError);
    assert(/not a lite-apiserver cache/.test(String(err)), String(err));
    const again = new DatabaseSync(join(dir, "cache.db"));
    assertEquals((again.prepare("SELECT x FROM precious").get() as { x: number }).x, 1);
    again.close();
  } finally {
    await removeTree(dir);
  }
});

Deno.test("file: damaged and foreign files are reported once and skipped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-file-" });
  try {
    const s1 = await openStore({ backend: "file", dir });
    const lk = key("_list~");
    await s1.apply([
      {
        op: "putObject",
        key: key("good"),
        value: { body: enc.encode("good"), contentType: "x", storedAt: 1 },
      },
      {
        op: "putObject",
        key: key("torn"),
        value: { body: enc.encode("a".repeat(1000)), contentType: "x", storedAt: 1 },
      },
      {
        op: "putObject",
        key: key("flipped"),
        value: { body: enc.encode("b".repeat(1000)), contentType: "x", storedAt: 1 },
      },
      {
        op: "replaceList",
        key: lk,
        meta: meta("1"),
        items: [["d/a", enc.encode("a")], ["d/b", enc.encode("b")]],
      },
    ]);
    await s1.close();
    const nsDir = join(dir, "cn~system:node:edge-1", "core~v1~pods", "default");
    // A torn write, a flipped byte, a damaged list item, garbage and leftovers of a crash.
    const torn = await Deno.readFile(join(nsDir, "torn"));
    await Deno.writeFile(join(nsDir, "torn"), torn.subarray(0, torn.length - 10));
    const flipped = await Deno.readFile(join(nsDir, "flipped"));
    flipped[flipped.length - 5] ^= 1;
    await Deno.writeFile(join(nsDir, "flipped"), flipped);
    const genDir = join(nsDir, "_list~", (await Deno.readTextFile(join(nsDir, "_list~", "#current"))).trim());
    await Deno.writeFile(join(genDir, "d%2Fb"), enc.encode("not a record"));
    await Deno.writeFile(join(nsDir, "bad name!"), enc.encode("foreign"));
    await Deno.writeFile(join(dir, "README"), enc.encode("foreign file where an identity dir belongs"));
    await Deno.writeFile(join(nsDir, "#tmp-leftover"), enc.encode("half written"));
    await Deno.mkdir(join(nsDir, "_list~", "#g-dead-0000"));

    const { lines } = await captureWarnings(async () => {
      const store = await openStore({ backend: "file", dir });
      try {
        for (let i = 0; i < 2; i++) {
          assertEquals(dec.decode((await store.getObject(key("good")))!.body), "good");
          assertEquals(await store.getObject(key("torn")), undefined);
          assertEquals(await store.getObject(key("flipped")), undefined);
          assertEquals(texts((await store.getList(lk))!.items), ["a"]);
          const names = (await store.entries()).map((e) => e.key.name).sort();
          assert(names.includes("good") && names.includes("_list~"), names.join(","));
        }
        // A write replaces a damaged file.
        await store.apply([{
          op: "putObject",
          key: key("torn"),
          value: { body: enc.encode("ok"), contentType: "x", storedAt: 2 },
        }]);
        assertEquals(dec.decode((await store.getObject(key("torn")))!.body), "ok");
      } finally {
        await store.close();
      }
    });
    const warned = (s: string) => lines.filter((l) => l.includes(s)).length;
    assertEquals(warned("torn"), 1, lines.join("\n"));
    assertEquals(warned("flipped"), 1, lines.join("\n"));
    assertEquals(warned("d%2Fb"), 1, lines.join("\n"));
    assertEquals(warned("bad name!"), 1, lines.join("\n"));
    assertEquals(warned("README"), 1, lines.join("\n"));
    assert(lines.every((l) => l.includes("WARN")), lines.join("\n"));
    const left = [...Deno.readDirSync(nsDir)].map((e) => e.name);
    assert(!left.includes("#tmp-leftover"), "temp files are removed at open");
    assert(![...Deno.readDirSync(join(nsDir, "_list~"))].some((e) => e.name === "#g-dead-0000"));
  } finally {
    await removeTree(dir);
  }
});
