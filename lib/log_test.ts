import assert, { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { Logger, OVERFLOW_KIND } from "./log.ts";

function logger(windowMs: number, maxKinds?: number) {
  const lines: string[] = [];
  const l = new Logger();
  l.configure({ sink: (line) => lines.push(line), repeatWindowMs: windowMs, maxKinds });
  return { l, lines };
}

/** Waits (bounded) until `cond` holds; says what it waited for. */
async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("log: 300 lines of one kind are one line, then one summary when the window ends", async () => {
  const { l, lines } = logger(200);
  using _ = l;
  for (let i = 0; i < 300; i++) l.warn("client certificate did not verify", { n: i }, "tls.unverified");
  assertEquals(lines.length, 1);
  assertMatch(lines[0], /WARN {2}client certificate did not verify n=0$/);
  // No new line comes: the summary is still written, by the timer.
  await until(() => lines.length === 2, "the summary line");
  assertMatch(lines[1], /did not verify \.\.\. and 299 more like this in the last 1 s n=299 repeated=299/);
  // The kind is forgotten once a window passes quietly, and the next line is written at once.
  await until(() => l.trackedKinds === 0, "the quiet kind to be forgotten");
  l.warn("client certificate did not verify", { n: 300 }, "tls.unverified");
  assertEquals(lines.length, 3);
});

Deno.test("log: a steady flood writes at most one line per window per kind", async () => {
  const { l, lines } = logger(100);
  using _ = l;
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < 550) {
    l.error("cache write failed", { error: "No space left on device" }, "cache.write-failed");
    sent++;
    await new Promise((r) => setTimeout(r, 1));
  }
  const elapsedWindows = (performance.now() - start) / 100;
  // The first line, then at most one summary per elapsed window.
  assert(lines.length <= 1 + Math.ceil(elapsedWindows), `${lines.length} lines for ${sent} events`);
  l.flush();
  const counted = lines.slice(1).reduce((n, line) => n + Number(/repeated=(\d+)/.exec(line)?.[1] ?? 0), 0);
  assertEquals(counted + 1, sent, "every event is in a line or counted in a summary");
});

Deno.test("log: kinds are independent; lines without a kind are never limited", () => {
  const { l, lines } = logger(60_000);
  using _ = l;
  for (let i = 0; i < 5; i++) {
    l.warn("a", {}, "kind.a");
    l.warn("b", {}, "kind.b");
    l.info("plain");
  }
  assertEquals(lines.filter((x) => / a$/.test(x)).length, 1);
  assertEquals(lines.filter((x) => / b$/.test(x)).length, 1);
  assertEquals(lines.filter((x) => / plain$/.test(x)).length, 5);
});

Deno.test("log: the set of kinds is bounded; extra kinds share one overflow kind", () => {
  const { l, lines } = logger(60_000, 3);
  using _ = l;
  for (let i = 0; i < 100; i++) l.warn(`problem ${i}`, {}, `kind.${i}`);
  assertEquals(l.trackedKinds, 4, "3 kinds and the overflow kind");
  assertEquals(lines.length, 4);
  l.flush();
  assertMatch(lines[4], /problem 99 \.\.\. and 96 more like this .* repeated=96 kind=log.too-many-kinds/);
  assert(lines[4].includes(OVERFLOW_KIND));
  assertEquals(l.trackedKinds, 0);
});

Deno.test("log: flush writes pending summaries and stops the timer (shutdown)", () => {
  const { l, lines } = logger(60_000);
  l.error("x", { a: 1 }, "k");
  l.error("x", { a: 2 }, "k");
  l.flush();
  assertEquals(lines.length, 2);
  assertMatch(lines[1], /x \.\.\. and 1 more like this in the last 1 s a=2 repeated=1/);
  // The test's op sanitizer fails if a timer is left.
});

Deno.test("log: JSON summaries carry the count as a field", () => {
  const { l, lines } = logger(60_000);
  l.configure({ format: "json" });
  l.warn("refused", { open: 50 }, "cap");
  l.warn("refused", { open: 51 }, "cap");
  l.flush();
  const s = JSON.parse(lines[1]);
  assertEquals([s.level, s.repeated, s.open], ["warn", 1, 51]);
  assertMatch(s.msg, /^refused \.\.\. and 1 more like this/);
});

Deno.test("log: below the level threshold a kind is neither written nor tracked", () => {
  const { l, lines } = logger(60_000);
  l.debug("noise", {}, "k");
  assertEquals([lines.length, l.trackedKinds], [0, 0]);
});
