/**
 * Resuming a held watch upstream: a new upstream watch from the last resourceVersion the client
 * saw, whose events are relayed into the client's response that is still open. The request goes
 * through the ordinary forward path with a context whose response is a `ContinuedResponse`: the
 * status line and headers were sent long ago, so a 200 is relayed as more body, and any other
 * answer ends the client's stream (it then relists, from the cloud).
 */
import { Writable } from "node:stream";
import type { ServerRequest } from "../http/request.ts";
import type { ServerResponse } from "../http/response.ts";
import type { RequestContext } from "../exchange/context.ts";

/** Query parameters a resumed watch must not repeat: the client already has its initial state. */
const DROP = ["sendInitialEvents", "resourceVersionMatch"];

/** The URL of the resumed watch: the same watch, from `fromRv`, with the time the client has left. */
export function resumedUrl(url: string, fromRv: string, startedAt: number, now = performance.now()): string {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
  for (const k of DROP) params.delete(k);
  params.set("resourceVersion", fromRv);
  params.set("watch", "true");
  const timeout = Number(params.get("timeoutSeconds") ?? "");
  if (timeout > 0) {
    params.set("timeoutSeconds", String(Math.max(1, Math.ceil(timeout - (now - startedAt) / 1000))));
  }
  return `${path}?${params}`;
}

/** A response whose head was already sent: writes go on into the client's open stream. */
class ContinuedResponse extends Writable {
  #client: ServerResponse;
  headersSent = true;
  statusCode = 200;

  constructor(client: ServerResponse) {
    super();
    this.#client = client;
    client.once("close", () => this.destroy());
  }

  /** 200: the events follow in the same stream. Anything else: the watch cannot go on. */
  writeHead(status: number): this {
    this.statusCode = status;
    if (status !== 200) this.#client.end();
    return this;
  }

  flushHeaders(): void {}

  override _write(chunk: Uint8Array, _enc: string, done: (err?: Error | null) => void): void {
    if (this.statusCode !== 200 || this.#client.writableEnded) return done();
    if (this.#client.write(chunk)) done();
    else this.#client.once("drain", () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.#client.writableEnded) this.#client.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // A destroyed relay (upstream cut) leaves the client's stream to the held-watch logic.
    done(err);
  }
}

/** A context for the resumed upstream watch of `ctx`: same caller, identity and plan (progress). */
export function resumeContext(ctx: RequestContext, fromRv: string): RequestContext {
  const req = {
    method: "GET",
    url: resumedUrl(ctx.req.url ?? "/", fromRv, ctx.startedAt),
    headers: ctx.req.headers,
    rawHeaders: ctx.req.rawHeaders,
  } as unknown as ServerRequest;
  const res = new ContinuedResponse(ctx.res) as unknown as ServerResponse;
  return { ...ctx, req, res, resumes: ctx.resumes ?? ctx };
}
