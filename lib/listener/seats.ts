/**
 * The listener's seats: every accepted TCP connection holds one from accept to close, also while
 * its TLS handshake is pending, so `--max-connections` counts what really holds a file. A seat is
 * pending (handshake not done), anonymous (no verified certificate, no proven token) or privileged
 * (a verified client certificate, or a token the upstream accepted).
 *
 * - Anonymous connections are capped (`--max-anonymous-connections`): one more takes the seat of
 *   the oldest idle anonymous connection (else the oldest busy one), so the rest of the capacity
 *   stays for the node's own components and a slowloris only churns itself.
 * - A full table takes a seat back for a newcomer: the oldest idle anonymous connection, else the
 *   oldest busy one, else the oldest handshake pending for longer than a grace period. Handshakes
 *   younger than the grace are spared while they hold at most half the seats, so a verified
 *   client's new connection finishes its handshake however fast anonymous ones churn around it.
 * - Privileged seats are never taken back; when they fill the table, a newcomer may still shake
 *   hands within a small slack, to be answered 503.
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
  /** Anonymous seats (<= max). */
  maxAnonymous: number;
}

/** Connections admitted beyond `max` only to be answered 503 when no seat can be taken back. */
export const REFUSAL_SLACK = 16;
/** A pending handshake younger than this is spared (while the young hold at most half the seats). */
export const HANDSHAKE_GRACE_MS = 1000;

export class Seats {
  readonly #seats = new Set<Seat>();
  #pending = 0;
  #anonymous = 0;
  /** Seats taken back since the last call of `takeEvicted`. */
  #evicted = 0;

  constructor(readonly limits: SeatLimits, private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.#seats.size;
  }

  /** Pending and anonymous seats. */
  get unprivileged(): number {
    return this.#pending + this.#anonymous;
  }

  /**
   * A new connection wants a (pending) seat; seats are taken back to make room. False when none
   * could be and the refusal slack is used up: close it unheard.
   */
  admit(seat: Seat): boolean {
    seat.kind = "pending";
    while (this.#seats.size >= this.limits.max) {
      if (!this.#takeBack(seat, false)) break;
    }
    if (this.#seats.size >= this.limits.max + REFUSAL_SLACK) return false;
    seat.since = this.now();
    this.#seats.add(seat);
    this.#count(seat, 1);
    return true;
  }

  /**
   * The seat's kind is now known (handshake done) or changed (token proven). False when it cannot
   * be seated (over the total and nothing to take back): answer it 503.
   */
  settle(seat: Seat, kind: SeatKind): boolean {
    if (!this.#seats.has(seat)) return false;
    this.#count(seat, -1);
    seat.kind = kind;
    this.#count(seat, 1);
    if (kind === "anonymous") {
      while (this.#anonymous > this.limits.maxAnonymous) {
        if (!this.#takeBack(seat, false, true)) break;
      }
    }
    if (this.#seats.size <= this.limits.max) return true;
    return kind === "privileged" && this.#takeBack(seat, false);
  }

  /** The connection closed (or was evicted): its seat is free. Idempotent. */
  release(seat: Seat): void {
    if (!this.#seats.delete(seat)) return;
    this.#count(seat, -1);
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

  #count(seat: Seat, d: number): void {
    if (seat.kind === "pending") this.#pending += d;
    else if (seat.kind === "anonymous") this.#anonymous += d;
  }

  /**
   * Takes back one unprivileged seat other than `except`; `anonymousOnly` for the anonymous cap;
   * `young`: young handshakes too (shedding). False when there is none to take.
   */
  #takeBack(except: Seat | undefined, young: boolean, anonymousOnly = false): boolean {
    let idle: Seat | undefined;
    let busy: Seat | undefined;
    let youngest: Seat | undefined;
    let youngCount = 0;
    let stale: Seat | undefined;
    const graceFrom = this.now() - HANDSHAKE_GRACE_MS;
    // Insertion order is age: the first of each kind is the oldest.
    for (const s of this.#seats) {
      if (s === except || s.kind === "privileged") continue;
      if (s.kind === "pending") {
        if (anonymousOnly) continue;
        if ((s.since ?? 0) <= graceFrom) stale ??= s;
        else {
          youngest ??= s;
          youngCount++;
        }
      } else if (!s.busy()) idle ??= s;
      else busy ??= s;
    }
    const takeYoung = young || youngCount > this.limits.max / 2;
    // Connections known to be anonymous go before handshakes still pending: on a loaded machine a
    // verified client's handshake can outlast the grace while anonymous ones churn around it.
    const victim = idle ?? busy ?? stale ?? (takeYoung ? youngest : undefined);
    if (!victim) return false;
    this.release(victim);
    this.#evicted++;
    victim.evict();
    return true;
  }
}
