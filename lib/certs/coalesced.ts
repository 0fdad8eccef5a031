/**
 * Runs an async job one at a time: a call while it runs schedules exactly one more run after it
 * (file events come in bursts; every burst must be seen, none twice at once).
 */
export class Coalesced {
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #stopped = false;

  constructor(private readonly job: () => Promise<void>, private readonly onError: (e: unknown) => void) {}

  run(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#running) {
      this.#queued ??= this.#running.then(() => {
        this.#queued = undefined;
        return this.run();
      });
      return this.#queued;
    }
    this.#running = this.job()
      .catch(this.onError)
      .finally(() => this.#running = undefined);
    return this.#running;
  }

  /** No more runs; resolves when the one in flight (and one queued) have finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    await this.#queued;
  }
}
