/** `lite-apiserver serve`: parse flags, start the proxy, reload on SIGHUP, stop on SIGTERM/SIGINT. */
import { parseServeArgs } from "../config/serve_config.ts";
import { startServer } from "../server.ts";
import { log } from "../log.ts";

export async function serveCommand(args: string[]): Promise<number> {
  const config = parseServeArgs(args);
  if (!config) return 0;
  const server = await startServer(config);
  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn("second signal: exiting now", { signal });
      Deno.exit(1);
    }
    stopping = true;
    log.info("shutting down", { signal });
    // Pending cache writes get a bounded time to land; a stop never hangs.
    const deadline = setTimeout(() => {
      log.warn("shutdown took longer than 10s: exiting");
      stopped.resolve();
    }, 10_000);
    server.close().then(() => {
      clearTimeout(deadline);
      stopped.resolve();
    }, (err) => {
      log.error("shutdown failed", { error: (err as Error).message });
      stopped.resolve();
    });
  };
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  // SIGHUP, not SIGUSR1: Deno opens its inspector on SIGUSR1.
  Deno.addSignalListener("SIGHUP", () => {
    log.info("SIGHUP: reloading certificates");
    server.reload().catch((err) => log.warn("reload failed", { error: (err as Error).message }));
  });
  await stopped.promise;
  return 0;
}
