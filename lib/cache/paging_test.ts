import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type PageOptions, paginate, PagingError } from "./paging.ts";

interface Item {
  key: string;
}

const keyOf = (i: Item) => i.key;
const LIST = "cn~node/core~v1~pods/_cluster/_list";

function items(...keys: string[]): Item[] {
  return keys.sort().map((key) => ({ key }));
}

function keys(list: Item[]): string[] {
  return list.map(keyOf);
}

/** Pages through `source()` (re-read before every page) until no continue token is left. */
function pageAll(
  source: () => Item[],
  limit: number,
  rv: () => string = () => "1",
  between?: (n: number) => void,
) {
  const seen: string[] = [];
  let token: string | undefined;
  for (let n = 0; n < 1000; n++) {
    const page = paginate(source(), keyOf, {
      limit,
      continue: token,
      listKeyId: LIST,
      resourceVersion: rv(),
    });
    seen.push(...keys(page.items));
    if (!page.continue) return seen;
    token = page.continue;
    between?.(n);
  }
  throw new Error("paging did not end");
}

Deno.test("paginate: no limit returns everything", () => {
  const all = items("a/1", "a/2", "b/1");
  assertEquals(paginate(all, keyOf, { listKeyId: LIST, resourceVersion: "5" }), { items: all });
  assertEquals(paginate(all, keyOf, { limit: 0, listKeyId: LIST, resourceVersion: "5" }), { items: all });
  assertEquals(paginate([], keyOf, { limit: 2, listKeyId: LIST, resourceVersion: "5" }), { items: [] });
});

Deno.test("paginate: pages, tokens and remainingItemCount", () => {
  const all = items("a", "b", "c", "d", "e");
  const opts: PageOptions = { limit: 2, listKeyId: LIST, resourceVersion: "7" };
  const p1 = paginate(all, keyOf, opts);
  assertEquals(keys(p1.items), ["a", "b"]);
  assertEquals(p1.remainingItemCount, 3);
  ok(p1.continue && /^[A-Za-z0-9_-]+$/.test(p1.continue));
  const p2 = paginate(all, keyOf, { ...opts, continue: p1.continue });
  assertEquals(keys(p2.items), ["c", "d"]);
  assertEquals(p2.remainingItemCount, 1);
  const p3 = paginate(all, keyOf, { ...opts, continue: p2.continue });
  assertEquals(keys(p3.items), ["e"]);
  assertEquals(p3.continue, undefined);
  assertEquals(p3.remainingItemCount, undefined);
  // An exact fit leaves no dangling token.
  const exact = paginate(items("a", "b"), keyOf, opts);
  assertEquals(exact.continue, undefined);
  // Without a limit, a continue token returns the rest.
  assertEquals(
    keys(paginate(all, keyOf, { listKeyId: LIST, resourceVersion: "7", continue: p1.continue }).items),
    [
      "c",
      "d",
      "e",
    ],
  );
  for (const limit of [1, 2, 3, 4, 5, 6, 100]) {
    assertEquals(pageAll(() => all, limit), ["a", "b", "c", "d", "e"], `limit ${limit}`);
  }
});

Deno.test("paginate: inserts and deletes between pages cause no duplicates or skips", () => {
  let current = items("ns/a", "ns/c", "ns/e", "ns/g", "ns/i", "ns/k");
  const original = new Set(keys(current));
  let rv = 10;
  const removed = new Set<string>();
  const seen = pageAll(() => current, 2, () => String(rv), (n) => {
    rv++;
    if (n === 0) {
      // Delete the last item served and one not yet served; insert before and after the cursor.
      removed.add("ns/c").add("ns/g");
      current = items(...keys(current).filter((k) => !removed.has(k)), "ns/b", "ns/h");
    } else if (n === 1) {
      current = items(...keys(current), "ns/0", "ns/z");
    }
  });
  assertEquals(new Set(seen).size, seen.length, `duplicates in ${seen}`);
  for (const k of original) {
    if (!removed.has(k)) ok(seen.includes(k), `skipped ${k}: ${seen}`);
  }
  ok(!seen.includes("ns/g"), "a deleted item not yet served must not appear");
  ok(seen.includes("ns/h") && seen.includes("ns/z"), "items inserted after the cursor are served");
  ok(!seen.includes("ns/b") && !seen.includes("ns/0"), "items inserted before the cursor are not");
});

Deno.test("paginate: rv change continues by default, expires on request", () => {
  const all = items("a", "b", "c");
  const p1 = paginate(all, keyOf, { limit: 1, listKeyId: LIST, resourceVersion: "1" });
  const p2 = paginate(all, keyOf, { limit: 1, listKeyId: LIST, resourceVersion: "2", continue: p1.continue });
  assertEquals(keys(p2.items), ["b"]);
  const same = paginate(all, keyOf, {
    limit: 1,
    listKeyId: LIST,
    resourceVersion: "1",
    continue: p1.continue,
    onVersionChange: "expire",
  });
  assertEquals(keys(same.items), ["b"]);
  const err = throwsPaging(() =>
    paginate(all, keyOf, {
      limit: 1,
      listKeyId: LIST,
      resourceVersion: "2",
      continue: p1.continue,
      onVersionChange: "expire",
    })
  );
  assertEquals([err.status, err.reason], [410, "Expired"]);
  ok(err.message.includes("too old"));
});

function throwsPaging(fn: () => unknown): PagingError {
  try {
    fn();
  } catch (e) {
    ok(e instanceof PagingError, String(e));
    return e;
  }
  throw new Error("expected a PagingError");
}

Deno.test("paginate: bad tokens are 400s", () => {
  const all = items("a", "b", "c");
  const p1 = paginate(all, keyOf, { limit: 1, listKeyId: LIST, resourceVersion: "1" });
  const other = throwsPaging(() =>
    paginate(all, keyOf, {
      limit: 1,
      listKeyId: "cn~other/core~v1~pods/_cluster/_list",
      resourceVersion: "1",
      continue: p1.continue,
    })
  );
  assertEquals([other.status, other.reason], [400, "BadRequest"]);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const bad = [
    "not a token",
    "!!!",
    "abc",
    b64("x"),
    b64(null),
    b64({ v: 2, k: "x", rv: "1", after: "a" }),
    b64({ v: 1, k: 1, rv: "1", after: "a" }),
    b64({ v: 1, k: "x", rv: "1" }),
    Buffer.from("{not json").toString("base64url"),
  ];
  for (const token of bad) {
    const e = throwsPaging(() =>
      paginate(all, keyOf, { limit: 1, listKeyId: LIST, resourceVersion: "1", continue: token })
    );
    assertEquals(e.status, 400, token);
    ok(!e.message.includes("\n"));
  }
  // A well-formed token for this list with an unknown cursor simply resumes after it.
  const p2 = paginate(all, keyOf, { limit: 5, listKeyId: LIST, resourceVersion: "1", continue: p1.continue });
  assertEquals(keys(p2.items), ["b", "c"]);
  throws(() => paginate(all, keyOf, { listKeyId: LIST, resourceVersion: "1", continue: "%%" }), PagingError);
});
