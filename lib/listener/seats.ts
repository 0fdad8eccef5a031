/**
 * The listener's seats: every accepted TCP connection holds one from accept to close, also while
 * its TLS handshake is pending, so `--max-connections` counts what really holds a file. Seats are
 * of three kinds: pending (handshake not done), anonymous (no verified certificate, no proven
 * token) and privileged (a verified client certificate, or a token the upstream accepted). Pending
 * and anonymous seats together are capped below the total (`--max-anonymous-connections`), so a
 * share of the capacity is always kept for the node's own components; when a seat is needed, an
 * unprivileged one is taken back: the oldest handshake pending for longer than a grace period
 * first, then the oldest idle anonymous connection, then the oldest busy one. A handshake younger
 * than the grace is never taken back for a newcomer (the newcomer is closed instead): a verified
 * client's new connection finishes its handshake however fast anonymous ones churn around it
 * (without that, kubelet got 10 of 30 answers under a reconnecting slowloris). Only shedding for
 * lack of files takes young handshakes too. Privileged seats are never taken back.
 */

export type SeatKind = "pending" | "anonymous" | "privileged";

export interface Seat {
  kind: SeatKind;
  /** When it was seated (set by `admit`). */
  since?: number;
  /** A request is in progress on it (idle ones go first). */
  busy(): boolean;
  /** Close it now: its place was taken back. */
  evict(): void;
}

export interface SeatLimits {
  /** All seats. */
  max: number;
  /** Pending and anonymous seats together (<= max). */
  maxUnprivileged: number;
}

/** Connections admitted beyond `max` only to be answered 503 when no seat can be taken back. */
export const REFUSAL_SLACK = 16;
/** A pending handshake younger than this is not taken back for a newcomer. */
export const HANDSHAKE_GRACE_MS = 1000;

export class Seats {
  readonly #seats = new Set<Seat>();
  #unprivileged = 0;
  /** Seats taken back since the last call of `takeEvicted`. */
  #evicted = 0;

  constructor(readonly limits: SeatLimits, private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.#seats.size;
  }

  get unprivileged(): number {
    return this.#unprivileged;
  }

  /**
   * A new connection wants a (pending) seat: takes back unprivileged seats to keep within the
   * limits. False when every seat is privileged and the refusal slack is used up (close it unheard).
   */
  admit(seat: Seat): boolean {
    const { max, maxUnprivileged } = this.limits;
    while (this.#unprivileged >= maxUnprivileged || this.#seats.size >= max) {
      if (!this.#takeBack(seat, false)) break;
    }
    if (this.#seats.size >= max + REFUSAL_SLACK) return false;
    if (this.#unprivileged >= maxUnprivileged && seat.kind !== "privileged") return false;
    seat.since = this.now();
    this.#seats.add(seat);
    if (seat.kind !== "privileged") this.#unprivileged++;
    return true;
  }

  /**
   * The seat's kind is now known (handshake done) or changed (token proven). Returns false when the
   * table is over its total and no seat could be taken back for this one: answer it 503.
   */
  settle(seat: Seat, kind: SeatKind): boolean {
    if (!this.#seats.has(seat)) return false;
    const was = seat.kind !== "privileged";
    seat.kind = kind;
    const is = kind !== "privileged";
    this.#unprivileged += (is ? 1 : 0) - (was ? 1 : 0);
    if (this.#seats.size <= this.limits.max) return true;
    if (kind === "privileged" && this.#takeBack(seat, false)) return true;
    return false;
  }

  /** The connection closed (or was evicted): its seat is free. Idempotent. */
  release(seat: Seat): void {
    if (!this.#seats.delete(seat)) return;
    if (seat.kind !== "privileged") this.#unprivileged--;
  }

  /** Takes back up to `n` unprivileged seats (file descriptors ran out). Returns how many. */
  shed(n: number): number {
    let done = 0;
    while (done < n && this.#takeBack(undefined, true)) done++;
    return done;
  }

  /** How many seats were taken back since the last call. */
  takeEvicted(): number {
    const n = this.#evicted;
    this.#evicted = 0;
    return n;
  }

  /** All seats (for closing). */
  all(): Seat[] {
    return [...this.#seats];
  }

  /** Takes back one unprivileged seat (young handshakes only when `young`); false: none. */
  #takeBack(except: Seat | undefined, young: boolean): boolean {
    let idle: Seat | undefined;
    let busy: Seat | undefined;
    let youngest: Seat | undefined;
    let victim: Seat | undefined;
    const graceFrom = this.now() - HANDSHAKE_GRACE_MS;
    // Insertion order is age: the first of each kind is the oldest.
    for (const s of this.#seats) {
      if (s === except || s.kind === "privileged") continue;
      if (s.kind === "pending") {
        if ((s.since ?? 0) <= graceFrom) {
          victim = s;
          break;
        }
        if (young) youngest ??= s;
      } else if (!s.busy()) idle ??= s;
      else busy ??= s;
    }
    victim ??= idle ?? busy ?? youngest;
    if (!victim) return false;
    this.release(victim);
    this.#evicted++;
    victim.evict();
    return true;
  }
}
