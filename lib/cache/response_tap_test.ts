/**
 * What the taps of whole answers hold is bounded together: over the budget an answer is relayed but
 * not cached and its bytes are released at once; a cut answer releases its bytes when it closes.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { PassThrough } from "node:stream";
import type { Cache } from "./cache.ts";
import type { CachePlan } from "./cache_plan.ts";
import { setTapBudget, tapBytesHeld, tapResponse } from "./response_tap.ts";
import type { CacheKey } from "../store/store.ts";

function answer(): PassThrough & { statusCode: number; headers: Record<string, string> } {
  return Object.assign(new PassThrough(), {
    statusCode: 200,
    headers: { "content-type": "application/json" },
  });
}

function fakeCache(recorded: string[]): Cache {
  return {
    recordObject: (key: CacheKey) => void recorded.push(String((key as { name?: string }).name ?? "object")),
  } as unknown as Cache;
}

const plan = (name: string): CachePlan => ({
  kind: "object",
  key: { name } as unknown as CacheKey,
  requestContinue: "",
});

const flushed = () => new Promise((r) => setTimeout(r, 0));

Deno.test("taps over the shared budget give up (not cached, bytes released); the others are cached", async () => {
  const prev = setTapBudget(1 << 20);
  try {
    const recorded: string[] = [];
    const cache = fakeCache(recorded);
    const a = answer(), b = answer();
    tapResponse(cache, plan("a"), a);
    tapResponse(cache, plan("b"), b);
    a.write(new Uint8Array(800 << 10).fill(32));
    b.write(new Uint8Array(400 << 10).fill(32));
    await flushed();
    // b would take the total over 1 MiB: it gave up and holds nothing.
    assertEquals(tapBytesHeld(), 800 << 10);
    a.end("{}");
    b.end("{}");
    a.resume();
    b.resume();
    await flushed();
    assertEquals(recorded, ["a"]);
    assertEquals(tapBytesHeld(), 0);
  } finally {
    setTapBudget(prev);
  }
});

Deno.test("an answer destroyed mid-body releases what its tap held, and is not cached", async () => {
  const recorded: string[] = [];
  const c = answer();
  tapResponse(fakeCache(recorded), plan("c"), c);
  c.write(new Uint8Array(300 << 10).fill(32));
  await flushed();
  assertEquals(tapBytesHeld(), 300 << 10);
  c.destroy();
  await flushed();
  assertEquals(tapBytesHeld(), 0);
  assertEquals(recorded, []);
});
