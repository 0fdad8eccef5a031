/**
 * Crash safety: a child process writes batches and reports each durable one; we SIGKILL it at random
 * moments, reopen the store and check that it opens cleanly, every entry is whole, and the state is
 * exactly the last reported batch's or the next one's (in flight at the kill). SQLite must hold one of
 * the two states as a whole (a batch is a transaction); the file backend may mix them per entry (each op
 * is atomic on its own) but never within an entry.
 */
import { deepStrictEqual as assertEquals, fail, ok as assert } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { configureLog } from "../lib/log.ts";
import { removeTree } from "../lib/store/file_store.ts";
import { openStore } from "../lib/store/open_store.ts";
import type { Store } from "../lib/store/store.ts";
import {
  crashKey,
  LIST_NAMES,
  type Model,
  OBJECT_NAMES,
  readBody,
  simulate,
} from "./support/store_writer.ts";

const WRITER = fileURLToPath(new URL("./support/store_writer.ts", import.meta.url));
const KILLS = 6;

/**
 * Runs the writer from batch `from`, SIGKILLs it `jitterMs` after its `killAfter`-th reported batch and
 * returns the last batch it reported (reading everything it printed before it died). The jitter is not a
 * wait: nothing depends on it but where in a batch the kill lands.
 */
async function runAndKill(
  backend: string,
  dir: string,
  from: number,
  killAfter: number,
  jitterMs: number,
): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", WRITER, backend, dir, String(from)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // A safety net only (a hung child would hang the suite); the test never waits on time.
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 25_000);
  const stderr = new Response(child.stderr).text();
  let last = from - 1;
  let seen = 0;
  let killed = false;
  let buf = "";
  let jitter: ReturnType<typeof setTimeout> | undefined;
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^committed (\d+)$/.exec(line);
        if (!m) continue;
        assertEquals(Number(m[1]), last + 1, "batches are reported in order");
        last = Number(m[1]);
        if (++seen === killAfter && !killed) {
          killed = true;
          // Without jitter the kill lands right as the next batch starts; jitter spreads it inside batches.
          if (jitterMs === 0) child.kill("SIGKILL");
          else jitter = setTimeout(() => child.kill("SIGKILL"), jitterMs);
        }
      }
    }
  } finally {
    clearTimeout(watchdog);
    clearTimeout(jitter);
  }
  const status = await child.status;
  const errText = await stderr;
  if (!killed || status.signal !== "SIGKILL") {
    fail(`writer ended on its own (${JSON.stringify(status)}) after ${seen} batches:\n${errText}`);
  }
  return last;
}

interface Found {
  objects: Map<string, number | undefined>;
  lists: Map<string, { rv: string; items: Map<string, number> } | undefined>;
}

/** Reads every entry the workload uses, asserting each is whole and under its own name. */
async function readState(store: Store): Promise<Found> {
  const found: Found = { objects: new Map(), lists: new Map() };
  for (const name of OBJECT_NAMES) {
    const obj = await store.getObject(crashKey(name));
    if (!obj) {
      found.objects.set(name, undefined);
      continue;
    }
    const b = readBody(obj.body);
    if (typeof b === "string") fail(`object ${name}: ${b}`);
    assertEquals(b.name, name);
    found.objects.set(name, b.seq);
  }
  for (const name of LIST_NAMES) {
    const list = await store.getList(crashKey(name));
    if (!list) {
      found.lists.set(name, undefined);
      continue;
    }
    const items = new Map<string, number>();
    list.items.forEach((body, i) => {
      const b = readBody(body);
      if (typeof b === "string") fail(`list ${name} item ${list.itemKeys[i]}: ${b}`);
      assertEquals(b.name, list.itemKeys[i]);
      items.set(b.name, b.seq);
    });
    found.lists.set(name, { rv: list.meta.resourceVersion, items });
  }
  return found;
}

/** Per-entry comparison: for each entry (of `found`, `model` and `other`), does it equal the model's value? */
function compare(found: Found, model: Model, other: Model): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const name of OBJECT_NAMES) {
    out.set(`object ${name}`, found.objects.get(name) === model.objects.get(name));
  }
  for (const name of LIST_NAMES) {
    const f = found.lists.get(name);
    const m = model.lists.get(name);
    out.set(`list ${name} presence`, !!f === !!m);
    if (!f || !m) continue;
    out.set(`list ${name} rv`, f.rv === m.rv);
    const otherItems = other.lists.get(name)?.items.keys() ?? [];
    for (const k of new Set([...f.items.keys(), ...m.items.keys(), ...otherItems])) {
      out.set(`list ${name} item ${k}`, f.items.get(k) === m.items.get(k));
    }
  }
  return out;
}

function describe(found: Found): string {
  return JSON.stringify({
    objects: Object.fromEntries(found.objects),
    lists: Object.fromEntries(
      [...found.lists].map(([k, v]) => [k, v && { rv: v.rv, items: Object.fromEntries(v.items) }]),
    ),
  });
}

async function verify(backend: string, dir: string, last: number): Promise<void> {
  const warnings: string[] = [];
  configureLog({ sink: (l) => warnings.push(l) });
  let found: Found;
  try {
    const store = await openStore({ backend: backend as "sqlite" | "file", dir });
    try {
      found = await readState(store);
    } finally {
      await store.close();
    }
  } finally {
    configureLog({ sink: (l) => console.error(l) });
  }
  assertEquals(warnings, [], "a crash leaves nothing damaged behind");
  const [a, b] = [simulate(last), simulate(last + 1)];
  const committed = compare(found, a, b);
  const inFlight = compare(found, b, a);
  const context = `after batch ${last}: ${describe(found)}`;
  if (backend === "sqlite") {
    const whole = (c: Map<string, boolean>) => [...c.values()].every(Boolean);
    assert(whole(committed) || whole(inFlight), `not batch ${last} nor ${last + 1} as a whole ${context}`);
  } else {
    for (const [entry, ok] of committed) {
      assert(ok || inFlight.get(entry), `${entry} is neither batch ${last}'s nor ${last + 1}'s ${context}`);
    }
    for (const [entry, ok] of inFlight) {
      assert(ok || committed.get(entry), `${entry} is neither batch ${last}'s nor ${last + 1}'s ${context}`);
    }
  }
}

for (const backend of ["sqlite", "file"]) {
  Deno.test(`${backend}: SIGKILL mid-write keeps every committed batch and no torn entry`, async () => {
    const dir = await Deno.makeTempDir({ prefix: `store-crash-${backend}-` });
    try {
      let from = 0;
      for (let round = 0; round < KILLS; round++) {
        const killAfter = 1 + Math.floor(Math.random() * 20);
        const jitterMs = round % 2 === 0 ? 0 : Math.floor(Math.random() * 40);
        const last = await runAndKill(backend, dir, from, killAfter, jitterMs);
        await verify(backend, dir, last);
        // Resume with the batch that may have been in flight: replaying it is idempotent.
        from = last + 1;
      }
    } finally {
      await removeTree(dir);
    }
  });
}
