/** The client's request body as the online path sends it upstream. */
import type { RequestContext } from "../exchange/context.ts";

const MAX_BUFFERED_BODY = 1 << 20;

/**
 * Reads a small request body up front so that it can be sent again to another endpoint.
 * undefined when there is nothing to read (no extra turn of the event loop for a GET).
 */
export function readSmallBody(ctx: RequestContext): Promise<void> | undefined {
  const len = Number(ctx.req.headers["content-length"] ?? "NaN");
  const method = ctx.req.method ?? "GET";
  if (!(len > 0 && len <= MAX_BUFFERED_BODY) || method === "GET" || method === "HEAD") {
    return undefined;
  }
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    ctx.req.on("data", (c: Uint8Array) => chunks.push(c));
    ctx.req.on("end", () => {
      ctx.body = Buffer.concat(chunks);
      resolve();
    });
    ctx.req.on("error", reject);
  });
}

/** A body still to be streamed from the client (not read up front, not empty). */
export function hasStreamedBody(ctx: RequestContext): boolean {
  if (ctx.body) return false;
  const len = ctx.req.headers["content-length"];
  return len !== undefined ? Number(len) > 0 : ctx.req.headers["transfer-encoding"] !== undefined;
}
