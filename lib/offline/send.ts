/** Sends a cached body, gzip-encoded when the caller accepts it and the body is large. */
import zlib from "node:zlib";
import { promisify } from "node:util";
import type { RequestContext } from "../exchange/context.ts";

const gzip = promisify(zlib.gzip);
/** Level 1, as the apiserver compresses: most of the saving for a fraction of the CPU. */
const GZIP_OPTIONS = { level: 1 };
/** The apiserver compresses responses above 128 KiB; so do we. */
const GZIP_MIN = 128 * 1024;

function acceptsGzip(header: string | undefined): boolean {
  return !!header && header.split(",").some((p) => {
    const [enc, ...params] = p.trim().toLowerCase().split(";");
    return enc.trim() === "gzip" && !params.some((x) => /^\s*q=0(\.0*)?\s*$/.test(x));
  });
}

export async function sendCached(
  ctx: RequestContext,
  body: Uint8Array,
  contentType: string,
  status = 200,
): Promise<void> {
  const headers: Record<string, string | number> = {
    "content-type": contentType,
    "cache-control": "no-cache, private",
    "x-lite-apiserver-source": "cache",
  };
  let out = ctx.rewrite ? ctx.rewrite.body(body, contentType) : body;
  if (out.byteLength >= GZIP_MIN && acceptsGzip(ctx.req.headers["accept-encoding"] as string | undefined)) {
    out = await gzip(out, GZIP_OPTIONS);
    headers["content-encoding"] = "gzip";
    headers["vary"] = "Accept-Encoding";
  }
  headers["content-length"] = out.byteLength;
  ctx.source = "cache";
  ctx.res.writeHead(status, headers);
  ctx.res.end(ctx.req.method === "HEAD" ? undefined : out);
}
