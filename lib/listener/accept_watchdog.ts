/**
 * Keeps the accept loop alive. Deno 2.9's `node:net` server stops accepting for good after an
 * accept error (EMFILE): its poller drops the error and is never woken for that listener again
 * (libs/core/uv_compat/tcp.rs: `while let Poll::Ready(Ok(..)) = listener.poll_accept(cx)`), and
 * no 'error' is emitted. Listening again on the same handle only re-arms that poller (uv_listen on
 * a listening handle marks it ready), so a tick does it, and the loop accepts again within a tick
 * once files are free. Running out of files is seen by a probe (opening /dev/null): then it is
 * logged (at most every 10 s) and unprivileged connections are shed to free files.
 */
import type { Server } from "node:net";
import { log } from "../log.ts";

/** How often the accept loop is re-armed and files are probed. */
export const WATCHDOG_MS = 250;

interface ListenHandle {
  listen(backlog: number): number;
}

export class AcceptWatchdog {
  #timer: ReturnType<typeof setInterval> | undefined;
  #servers: Server[] = [];

  constructor(private readonly deps: { shed(): number }) {}

  start(servers: Server[]): void {
    this.#servers = servers;
    this.#timer = setInterval(() => this.#tick(), WATCHDOG_MS);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** An accept error the server did report. */
  acceptError(err: NodeJS.ErrnoException): void {
    this.#outOfFiles(err.code ?? err.message);
  }

  #tick(): void {
    if (!filesLeft()) this.#outOfFiles("EMFILE");
    for (const s of this.#servers) {
      // deno-lint-ignore no-explicit-any
      const handle = (s as any)._handle as ListenHandle | null | undefined;
      if (!handle || typeof handle.listen !== "function") continue;
      try {
        handle.listen(511);
      } catch {
        // Closing: nothing to re-arm.
      }
    }
  }

  #outOfFiles(reason: string): void {
    const closed = this.deps.shed();
    log.warn("cannot accept connections: out of file descriptors; shedding anonymous connections", {
      reason,
      closed,
    }, "listener.out-of-files");
  }
}

/** A file can still be opened (false when the process is at its descriptor limit). */
function filesLeft(): boolean {
  try {
    Deno.openSync("/dev/null").close();
    return true;
  } catch (e) {
    const m = (e as Error).message;
    return !(/os error 2[34]\b/.test(m) || /too many open files/i.test(m));
  }
}
