/**
 * A deterministic write workload for the store crash test.
 *
 * As a program: `deno run -A tests/support/store_writer.ts <sqlite|file> <dir> <fromSeq>` applies
 * batch fromSeq, fromSeq+1, ... forever and prints `committed <seq>` after each batch is durable.
 * As a module: the same plan (`planBatch`) and a model of the expected state after any batch (`simulate`)
 * so the test can check what survived a SIGKILL. Every body carries a sha256 of its payload.
 */
import { createHash } from "node:crypto";
import { openStore } from "../../lib/store/open_store.ts";
import type { CacheKey, WriteOp } from "../../lib/store/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export const OBJECT_NAMES = ["obj-0", "obj-1", "obj-2", "obj-3", "obj-4", "obj-5", "marker"];
export const LIST_NAMES = ["_list~a", "_list~b"];

export function crashKey(name: string): CacheKey {
  return { identity: "cn~crash", resource: "core~v1~pods", namespace: "default", name };
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/** A body that names its entry and batch and proves it is whole. Sizes vary from 50 B to ~6 KB. */
export function makeBody(name: string, seq: number): Uint8Array {
  const len = 50 + ((seq * 7919 + name.length * 131) % 6000);
  const payload = `${name}@${seq}:`.repeat(Math.ceil(len / 8)).slice(0, len);
  return enc.encode(JSON.stringify({ name, seq, payload, sha256: sha256(payload) }));
}

/** The name and batch a body was written by, or why it is not a whole body. */
export function readBody(body: Uint8Array): { name: string; seq: number } | string {
  try {
    const v = JSON.parse(dec.decode(body));
    if (sha256(v.payload) !== v.sha256) return "payload checksum mismatch";
    return { name: v.name, seq: v.seq };
  } catch (e) {
    return `unparseable body: ${e instanceof Error ? e.message : e}`;
  }
}

const itemName = (i: number) => `ns/item-${String(i).padStart(2, "0")}`;

type ListOp =
  | { kind: "replace"; items: string[] }
  | { kind: "upsert"; item: string }
  | { kind: "delete"; item: string }
  | { kind: "bookmark" };

/** What batch `seq` does: one object, one list operation, then the marker object. */
function plan(seq: number): { object: string; list: string; listOp: ListOp } {
  const object = OBJECT_NAMES[seq % 6];
  const list = LIST_NAMES[seq % 2];
  let listOp: ListOp;
  if (seq % 7 === 0 || seq % 7 === 1) {
    listOp = { kind: "replace", items: Array.from({ length: 5 + (seq % 25) }, (_, i) => itemName(i)) };
  } else if (seq % 5 === 0) listOp = { kind: "delete", item: itemName(seq % 15) };
  else if (seq % 11 === 0) listOp = { kind: "bookmark" };
  else listOp = { kind: "upsert", item: itemName(seq % 15) };
  return { object, list, listOp };
}

export function planBatch(seq: number): WriteOp[] {
  const { object, list, listOp } = plan(seq);
  const rv = String(seq);
  const key = crashKey(list);
  const ops: WriteOp[] = [{
    op: "putObject",
    key: crashKey(object),
    value: { body: makeBody(object, seq), contentType: "application/json", storedAt: Date.now() },
  }];
  switch (listOp.kind) {
    case "replace":
      ops.push({
        op: "replaceList",
        key,
        meta: {
          envelope: JSON.stringify({ rv }),
          resourceVersion: rv,
          contentType: "application/json",
          storedAt: Date.now(),
        },
        items: listOp.items.map((k) => [k, makeBody(k, seq)]),
      });
      break;
    case "upsert":
      ops.push({
        op: "upsertItem",
        key,
        itemKey: listOp.item,
        body: makeBody(listOp.item, seq),
        resourceVersion: rv,
      });
      break;
    case "delete":
      ops.push({ op: "deleteItem", key, itemKey: listOp.item, resourceVersion: rv });
      break;
    case "bookmark":
      ops.push({ op: "setListVersion", key, resourceVersion: rv });
  }
  ops.push({
    op: "putObject",
    key: crashKey("marker"),
    value: { body: makeBody("marker", seq), contentType: "application/json", storedAt: Date.now() },
  });
  return ops;
}

/** Expected state: the batch that wrote each object and item, and each list's resourceVersion. */
export interface Model {
  objects: Map<string, number>;
  lists: Map<string, { rv: string; items: Map<string, number> }>;
}

/** The state after batches 0..upTo (none when upTo < 0). */
export function simulate(upTo: number): Model {
  const m: Model = { objects: new Map(), lists: new Map() };
  for (let seq = 0; seq <= upTo; seq++) {
    const { object, list, listOp } = plan(seq);
    m.objects.set(object, seq);
    const l = m.lists.get(list);
    if (listOp.kind === "replace") {
      m.lists.set(list, { rv: String(seq), items: new Map(listOp.items.map((k) => [k, seq])) });
    } else if (l) {
      l.rv = String(seq);
      if (listOp.kind === "upsert") l.items.set(listOp.item, seq);
      if (listOp.kind === "delete") l.items.delete(listOp.item);
    }
    m.objects.set("marker", seq);
  }
  return m;
}

async function main(): Promise<void> {
  const [backend, dir, from] = Deno.args;
  if ((backend !== "sqlite" && backend !== "file") || !dir || !/^\d+$/.test(from ?? "")) {
    console.error("usage: store_writer.ts <sqlite|file> <dir> <fromSeq>");
    Deno.exit(2);
  }
  const store = await openStore({ backend, dir });
  for (let seq = Number(from);; seq++) {
    await store.apply(planBatch(seq));
    console.log(`committed ${seq}`);
  }
}

if (import.meta.main) await main();
