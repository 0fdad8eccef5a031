import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { DeadlineSet, type Expiring, type Sweep, Timers } from "./timers.ts";

/** Resolves once `cond()` holds; fails after `ms` saying what it waited for. */
async function until(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function item(deadline: number): Expiring & { expired: number } {
  const it = {
    deadline,
    expired: 0,
    expire: () => void it.expired++,
  };
  return it;
}

Deno.test("timers: deadlines of two sets with different periods expire on one service; the sweeps then stop", async () => {
  const timers = new Timers();
  try {
    const fast = new DeadlineSet<Expiring & { expired: number }>(timers, 10, { clearOnExpiry: true });
    const slow = new DeadlineSet<Expiring & { expired: number }>(timers, 50);
    const a = item(performance.now() + 20);
    const b = item(performance.now() + 30);
    const never = item(0);
    fast.register(a);
    fast.register(never);
    // Not cleared on expiry: expire() unregisters it (as a served connection closes itself).
    b.expire = () => {
      b.expired++;
      slow.unregister(b);
    };
    slow.register(b);
    assertEquals(timers.running, 2);
    await until("both deadlines expired", () => a.expired === 1 && b.expired === 1);
    assertEquals([a.deadline, never.expired], [0, 0]);
    // The slow set is empty: its sweep stops; the fast one goes on while `a` and `never` are registered.
    await until("the empty set's sweep stopped", () => timers.running === 1);
    fast.unregister(a);
    fast.unregister(never);
    await until("every sweep stopped", () => timers.running === 0);
    assertEquals(a.expired, 1);
  } finally {
    timers.close();
  }
});

Deno.test("timers: a sweep runs every period until it says there is nothing left; close stops all", async () => {
  const timers = new Timers();
  let runs = 0;
  const sweep: Sweep = { periodMs: 5, keepAlive: false, run: () => ++runs < 3 };
  timers.start(sweep);
  timers.start(sweep); // already running: no second schedule
  await until("three runs", () => runs === 3);
  await until("the sweep stopped", () => timers.running === 0);
  timers.start(sweep);
  assertEquals(timers.running, 1);
  timers.close();
  assertEquals(timers.running, 0);
  timers.start(sweep);
  assertEquals(timers.running, 0);
});
