import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CacheBudget } from "./cache_budget.ts";
import type { CacheKey, EntryInfo, WriteOp } from "../store/store.ts";

const key = (identity: string, name: string): CacheKey => ({
  identity,
  resource: "core~v1~configmaps",
  namespace: "default",
  name,
});
const put = (k: CacheKey, bytes = 10): WriteOp => ({
  op: "putObject",
  key: k,
  value: { body: new Uint8Array(bytes), contentType: "application/json", storedAt: 0 },
});

function budget(
  bounds: { perIdentity: [number, number]; total: [number, number] },
  stored: EntryInfo[] = [],
) {
  const deleted: string[] = [];
  const b = new CacheBudget(
    { entries: () => Promise.resolve(stored) },
    {
      perIdentity: { bytes: bounds.perIdentity[0], entries: bounds.perIdentity[1] },
      total: { bytes: bounds.total[0], entries: bounds.total[1] },
    },
    (op) => {
      deleted.push(`${op.op} ${op.key.identity}/${op.key.name}`);
      return true;
    },
  );
  return { b, deleted };
}

Deno.test("over its entry bound, an identity loses its own least recently used entries", () => {
  const { b, deleted } = budget({ perIdentity: [1e9, 10], total: [1e9, 1000] });
  b.recorded(put(key("victim", "v")), 1);
  for (let i = 0; i < 10; i++) b.recorded(put(key("flood", `f${i}`)), 10 + i);
  b.touch(key("flood", "f0"), 100); // read recently: kept
  assertEquals(deleted, []);
  b.recorded(put(key("flood", "f10")), 200);
  // 11 > 10: trimmed to 9, least recently used first (f1, f2), never the victim's entry.
  assertEquals(deleted, ["deleteObject flood/f1", "deleteObject flood/f2"]);
  assertEquals(b.usage("flood").entries, 9);
  assertEquals(b.usage("victim").entries, 1);
});

Deno.test("over the overall bound, the identity whose write crossed it pays, not the others", () => {
  const { b, deleted } = budget({ perIdentity: [1e9, 100], total: [1e9, 5] });
  for (let i = 0; i < 4; i++) b.recorded(put(key("big", `b${i}`)), i);
  b.recorded(put(key("small", "s0")), 10);
  b.recorded(put(key("small", "s1")), 11);
  assertEquals(deleted, ["deleteObject small/s0"]);
  assertEquals(b.usage(), { bytes: 50, entries: 5 });
});

Deno.test("byte bounds; an answer larger than a bound is not admitted; lists are deleted as lists", async () => {
  const { b, deleted } = budget({ perIdentity: [100, 100], total: [1000, 100] }, [
    { key: key("a", "_list"), kind: "list", bytes: 60, count: 3, storedAt: 1 },
    { key: key("a", "o"), kind: "object", bytes: 30, count: 1, storedAt: 2 },
  ]);
  await b.load(3);
  assertEquals(b.admits(put(key("a", "huge"), 101)), false);
  b.recorded(put(key("a", "n"), 20), 4);
  await new Promise((r) => setTimeout(r, 0)); // patched lists are measured in the store first
  // 110 > 100 bytes: down to 90, oldest first (the list).
  assertEquals(deleted, ["deleteList a/_list"]);
  assertEquals(b.usage("a"), { bytes: 50, entries: 2 });
});

Deno.test("bounds lowered since the last run are applied at load", async () => {
  const stored: EntryInfo[] = Array.from({ length: 6 }, (_, i) => ({
    key: key("a", `o${i}`),
    kind: "object" as const,
    bytes: 1,
    count: 1,
    storedAt: i,
  }));
  const { b, deleted } = budget({ perIdentity: [1e9, 3], total: [1e9, 100] }, stored);
  await b.load();
  assertEquals(deleted, ["deleteObject a/o0", "deleteObject a/o1", "deleteObject a/o2", "deleteObject a/o3"]);
  assertEquals(b.usage("a").entries, 2);
});
