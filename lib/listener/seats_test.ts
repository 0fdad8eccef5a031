import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { HANDSHAKE_GRACE_MS, REFUSAL_SLACK, type Seat, type SeatKind, Seats } from "./seats.ts";

function seat(name: string, kind: SeatKind = "pending", busy = false) {
  const s: Seat & { name: string; evicted: boolean } = {
    name,
    kind,
    evicted: false,
    busy: () => busy,
    evict: () => void (s.evicted = true),
  };
  return s;
}

Deno.test("pending and anonymous seats are capped; a stale handshake gives way first, a young one never", () => {
  let now = 0;
  const seats = new Seats({ max: 10, maxUnprivileged: 3 }, () => now);
  const a = seat("a"), b = seat("b"), c = seat("c");
  for (const s of [a, b, c]) assertEquals(seats.admit(s), true);
  seats.settle(a, "anonymous");
  // Young handshakes (b, c) are spared while an anonymous connection (a) can go.
  now = HANDSHAKE_GRACE_MS / 2;
  const d = seat("d");
  assertEquals(seats.admit(d), true);
  assertEquals([a.evicted, b.evicted, c.evicted], [true, false, false]);
  // Past the grace, the oldest pending handshake (b) goes first.
  now = HANDSHAKE_GRACE_MS;
  const e = seat("e");
  assertEquals(seats.admit(e), true);
  assertEquals([b.evicted, c.evicted, d.evicted], [true, false, false]);
  // c is stale now too; then only young handshakes are left: the newcomer is closed instead.
  assertEquals(seats.admit(seat("f")), true);
  assertEquals([c.evicted, d.evicted, e.evicted], [true, false, false]);
  now = HANDSHAKE_GRACE_MS + 1;
  assertEquals(seats.admit(seat("g")), false);
  assertEquals([d.evicted, e.evicted], [false, false]);
  assertEquals(seats.unprivileged, 3);
  assertEquals(seats.takeEvicted(), 3);
  // Out of files: young handshakes are shed too.
  assertEquals(seats.shed(3), 3);
});

Deno.test("idle anonymous connections go before busy ones; privileged seats are never taken", () => {
  const seats = new Seats({ max: 4, maxUnprivileged: 4 });
  const busy = seat("busy", "pending", true), idle = seat("idle", "pending", false);
  const k1 = seat("k1"), k2 = seat("k2");
  for (const s of [busy, idle, k1, k2]) seats.admit(s);
  seats.settle(busy, "anonymous");
  seats.settle(idle, "anonymous");
  seats.settle(k1, "privileged");
  seats.settle(k2, "privileged");
  const n1 = seat("n1");
  assertEquals(seats.admit(n1), true);
  assertEquals([idle.evicted, busy.evicted], [true, false]);
  seats.settle(n1, "privileged");
  const n2 = seat("n2");
  assertEquals(seats.admit(n2), true);
  assertEquals(busy.evicted, true);
  seats.settle(n2, "privileged");
  // All four seats privileged: a newcomer may shake hands, then it is refused (503), not seated.
  const late = seat("late");
  assertEquals(seats.admit(late), true);
  assertEquals(seats.settle(late, "privileged"), false);
  // A flood of newcomers never holds more than the refusal slack beyond the cap.
  for (let i = 0; i < 100; i++) seats.admit(seat(`x${i}`));
  assertEquals(seats.size <= 4 + REFUSAL_SLACK, true);
  for (const s of [k1, k2, n1, n2]) assertEquals(s.evicted, false);
});

Deno.test("a verified newcomer over the total takes an anonymous seat back", () => {
  const seats = new Seats({ max: 2, maxUnprivileged: 2 });
  const a = seat("a"), b = seat("b");
  seats.admit(a);
  seats.admit(b);
  seats.settle(a, "anonymous");
  seats.settle(b, "anonymous");
  const k = seat("k");
  assertEquals(seats.admit(k), true);
  assertEquals(a.evicted, true);
  assertEquals(seats.settle(k, "privileged"), true);
  assertEquals(seats.size, 2);
  seats.release(b);
  seats.release(b);
  assertEquals(seats.size, 1);
  assertEquals(seats.unprivileged, 0);
});

Deno.test("shedding takes back unprivileged seats only", () => {
  const seats = new Seats({ max: 10, maxUnprivileged: 10 });
  const k = seat("k");
  seats.admit(k);
  seats.settle(k, "privileged");
  for (let i = 0; i < 5; i++) seats.admit(seat(`p${i}`));
  assertEquals(seats.shed(3), 3);
  assertEquals(seats.shed(10), 2);
  assertEquals(k.evicted, false);
  assertEquals(seats.size, 1);
});
