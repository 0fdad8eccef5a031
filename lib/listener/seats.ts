/**
 * The listener's seats: every accepted TCP connection holds one from accept to close, also while
 * its TLS handshake is pending, so `--max-connections` counts what really holds a file. Seats are
 * of three kinds: pending (handshake not done), anonymous (no verified certificate, no proven
 * token) and privileged (a verified client certificate, or a token the upstream accepted). Pending
 * and anonymous seats together are capped below the total (`--max-anonymous-connections`), so a
 * share of the capacity is always kept for the node's own components; when a seat is needed, an
 * unprivileged one is taken back: the oldest pending handshake first, then the oldest idle
 * anonymous connection, then the oldest busy one. Privileged seats are never taken back.
 */

export type SeatKind = "pending" | "anonymous" | "privileged";

export interface Seat {
  kind: SeatKind;
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

export class Seats {
  readonly #seats = new Set<Seat>();
  #unprivileged = 0;
  /** Seats taken back since the last call of `takeEvicted`. */
  #evicted = 0;

  constructor(readonly limits: SeatLimits) {}

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
      if (!this.#takeBack(seat)) break;
    }
    if (this.#seats.size >= max + REFUSAL_SLACK) return false;
    if (this.#unprivileged >= maxUnprivileged && seat.kind !== "privileged") return false;
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
    if (kind === "privileged" && this.#takeBack(seat)) return true;
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
    while (done < n && this.#takeBack(undefined)) done++;
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

  #takeBack(except: Seat | undefined): boolean {
    let idle: Seat | undefined;
    let busy: Seat | undefined;
    let victim: Seat | undefined;
    // Insertion order is age: the first of each kind is the oldest.
    for (const s of this.#seats) {
      if (s === except || s.kind === "privileged") continue;
      if (s.kind === "pending") {
        victim = s;
        break;
      }
      if (!s.busy()) idle ??= s;
      else busy ??= s;
    }
    victim ??= idle ?? busy;
    if (!victim) return false;
    this.release(victim);
    this.#evicted++;
    victim.evict();
    return true;
  }
}
