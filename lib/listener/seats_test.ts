import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { HANDSHAKE_GRACE_MS, REFUSAL_SLACK, type Seat, type SeatKind, Seats } from "./seats.ts";

function seat(name: string, busy = false) {
  const s: Seat & { name: string; evicted: boolean } = {
    name,
    kind: "pending" as SeatKind,
    evicted: false,
    busy: () => busy,
    evict: () => void (s.evicted = true),
  };
  return s;
}

Deno.test("anonymous connections are capped: the oldest idle one gives way, then the oldest busy one", () => {
  const seats = new Seats({ max: 10, maxAnonymous: 3 });
  const busy = seat("busy", true), idle1 = seat("idle1"), idle2 = seat("idle2");
  for (const s of [busy, idle1, idle2]) {
    assertEquals(seats.admit(s), true);
    assertEquals(seats.settle(s, "anonymous"), true);
  }
  const d = seat("d");
  seats.admit(d);
  seats.settle(d, "anonymous");
  assertEquals([busy.evicted, idle1.evicted, idle2.evicted, d.evicted], [false, true, false, false]);
  const e = seat("e", true);
  seats.admit(e);
  seats.settle(e, "anonymous");
  assertEquals([busy.evicted, idle2.evicted], [false, true]);
  assertEquals(seats.unprivileged, 3);
  assertEquals(seats.takeEvicted(), 2);
});

Deno.test("a full table: a stale handshake goes first, young ones are spared up to half the seats", () => {
  let now = 0;
  const seats = new Seats({ max: 4, maxAnonymous: 4 }, () => now);
  const a = seat("a"), b = seat("b");
  seats.admit(a);
  seats.admit(b);
  const k1 = seat("k1"), k2 = seat("k2");
  seats.admit(k1);
  seats.admit(k2);
  seats.settle(k1, "privileged");
  seats.settle(k2, "privileged");
  // Two young handshakes hold half the seats: a newcomer is closed, not seated over them.
  now = HANDSHAKE_GRACE_MS / 2;
  const c = seat("c");
  assertEquals(seats.admit(c), true, "within the refusal slack");
  assertEquals([a.evicted, b.evicted], [false, false]);
  seats.release(c);
  // Past the grace, the oldest stale handshake goes.
  now = HANDSHAKE_GRACE_MS;
  const d = seat("d");
  assertEquals(seats.admit(d), true);
  assertEquals([a.evicted, b.evicted], [true, false]);
  assertEquals(seats.size, 4);
});

Deno.test("a full table: anonymous connections go before a handshake that outlasted the grace", () => {
  // On a loaded machine kubelet's handshake can take longer than the grace while a slowloris churns.
  let now = 0;
  const seats = new Seats({ max: 3, maxAnonymous: 3 }, () => now);
  const kubelet = seat("kubelet");
  seats.admit(kubelet);
  const slow1 = seat("slow1", true), slow2 = seat("slow2", true);
  for (const s of [slow1, slow2]) {
    seats.admit(s);
    seats.settle(s, "anonymous");
  }
  now = HANDSHAKE_GRACE_MS * 3;
  const next = seat("next");
  assertEquals(seats.admit(next), true);
  assertEquals([kubelet.evicted, slow1.evicted, slow2.evicted], [false, true, false]);
});

Deno.test("young handshakes over half the seats give way, oldest first", () => {
  const seats = new Seats({ max: 4, maxAnonymous: 4 }, () => 0);
  const ps = [seat("p0"), seat("p1"), seat("p2"), seat("p3")];
  for (const p of ps) seats.admit(p);
  const k = seat("k");
  assertEquals(seats.admit(k), true);
  assertEquals(ps.map((p) => p.evicted), [true, false, false, false]);
  assertEquals(seats.size, 4);
});

Deno.test("privileged seats are never taken back: newcomers within the slack get a 503, then are closed", () => {
  const seats = new Seats({ max: 2, maxAnonymous: 2 });
  const k1 = seat("k1"), k2 = seat("k2");
  for (const k of [k1, k2]) {
    seats.admit(k);
    seats.settle(k, "privileged");
  }
  const late = seat("late");
  assertEquals(seats.admit(late), true);
  assertEquals(seats.settle(late, "privileged"), false, "answer 503");
  for (let i = 0; i < 100; i++) seats.admit(seat(`x${i}`));
  assertEquals(seats.size <= 2 + REFUSAL_SLACK, true);
  assertEquals([k1.evicted, k2.evicted], [false, false]);
});

Deno.test("a verified newcomer over the total takes an anonymous seat back; shedding spares privileged", () => {
  const seats = new Seats({ max: 2, maxAnonymous: 2 });
  const a = seat("a"), b = seat("b");
  for (const s of [a, b]) {
    seats.admit(s);
    seats.settle(s, "anonymous");
  }
  const k = seat("k");
  assertEquals(seats.admit(k), true);
  assertEquals(a.evicted, true);
  assertEquals(seats.settle(k, "privileged"), true);
  assertEquals(seats.shed(5), 1);
  assertEquals([b.evicted, k.evicted], [true, false]);
  seats.release(b);
  assertEquals(seats.size, 1);
  assertEquals(seats.unprivileged, 0);
});
