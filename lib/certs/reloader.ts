/**
 * The reload loop both certificate watchers share: a re-read runs on a change to a watched file
 * (debounced), on `now()` (SIGHUP) and on a timer the watcher re-arms after each run with `after()`;
 * runs never overlap, and one arriving during a run is run once after it.
 */
import { errMessage } from "../config/errors.ts";
import { log } from "../log.ts";
import { Coalesced } from "./coalesced.ts";
import { FileWatcher } from "./watch_files.ts";

export class Reloader {
  readonly #runs: Coalesced;
  readonly #files: FileWatcher;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** `what` names the material in the error log of a failed run. */
  constructor(what: string, run: () => Promise<void>, debounceMs: number) {
    this.#runs = new Coalesced(run, (e) => log.error(`${what} reload failed`, { error: errMessage(e) }));
    this.#files = new FileWatcher(() => void this.now(), debounceMs);
  }

  /** True once close() was called: a run in flight stops short of changing anything. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Runs a re-read now (or once after the one in flight). */
  now(): Promise<void> {
    return this.#runs.run();
  }

  /** Watches these files (symlinks re-resolved): call it at each run. */
  watch(paths: string[]): Promise<void> {
    return this.#files.setPaths(paths);
  }

  /** The next periodic re-read, `ms` from now, replacing the one armed before. */
  after(ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.now();
    }, ms);
  }

  /** Stops file watches and the timer; resolves when the run in flight (and one queued) has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#files.close();
    await this.#runs.stop();
  }
}
