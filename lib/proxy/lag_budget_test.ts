/** Over the process's lag budget the largest queue goes first; a small laggard is spared. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { LagBudget, type Laggard } from "./lag_budget.ts";

/** A relay's queue: grows through the budget, released (and gone) when evicted. */
function queue(budget: LagBudget, name: string, evicted: string[]): Laggard & { push(n: number): void } {
  let queued = 0;
  const q = {
    get queued() {
      return queued;
    },
    push(n: number) {
      queued += n;
      budget.adjust(n);
    },
    evict() {
      evicted.push(name);
      budget.adjust(-queued);
      budget.leave(q);
      queued = 0;
    },
  };
  budget.join(q);
  return q;
}

Deno.test("over the budget the largest queues are evicted until within it; the small one stays", () => {
  const budget = new LagBudget(100);
  const evicted: string[] = [];
  const small = queue(budget, "small", evicted);
  const a = queue(budget, "a", evicted);
  const b = queue(budget, "b", evicted);
  small.push(10);
  a.push(40);
  b.push(45);
  assertEquals(evicted, []);
  // b grows past the budget: b is the largest and goes.
  b.push(10);
  assertEquals(evicted, ["b"]);
  assertEquals(budget.total, 50);
  // a grows by a lot: it goes, small stays.
  a.push(60);
  assertEquals(evicted, ["b", "a"]);
  assertEquals(budget.total, 10);
  assertEquals(small.queued, 10);
  assertEquals(budget.evictions, 2);
});

Deno.test("a queue that shrinks gives its bytes back; one that left is never evicted", () => {
  const budget = new LagBudget(100);
  const evicted: string[] = [];
  const a = queue(budget, "a", evicted);
  a.push(90);
  a.push(-80);
  // Released as the relay does: its bytes out of the total, then it leaves.
  a.push(-10);
  budget.leave(a);
  const b = queue(budget, "b", evicted);
  b.push(95);
  assertEquals(evicted, []);
  b.push(20);
  assertEquals(evicted, ["b"]);
});
