/**
 * The process-wide budget for request-body bytes held in memory: bytes read from clients and not
 * yet taken by whoever forwards them (a slow or black-holed upstream). Each request accounts for
 * what it holds; a request that would take the total over the budget is refused (503, connection
 * closed) rather than waited on, so a full budget cannot hold connections hostage.
 */
export class BodyBudget {
  #held = 0;
  constructor(readonly limit: number) {}

  /** Bytes held now by all requests. */
  get held(): number {
    return this.#held;
  }

  /** Changes the bytes held by one request by `delta`; false when the total is over the budget. */
  adjust(delta: number): boolean {
    this.#held = Math.max(0, this.#held + delta);
    return this.#held <= this.limit;
  }
}
