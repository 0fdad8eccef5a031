/** metav1.Status answers, worded the way the apiserver words them. */
import type { ServerResponse } from "../http/response.ts";

const REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  406: "NotAcceptable",
  408: "Timeout",
  409: "AlreadyExists",
  410: "Expired",
  413: "RequestEntityTooLarge",
  429: "TooManyRequests",
  500: "InternalError",
  503: "ServiceUnavailable",
  504: "Timeout",
};

export function statusObject(
  code: number,
  message: string,
  reason = REASONS[code] ?? "Unknown",
  details?: Record<string, unknown>,
) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** A Status body for the listener's own answers (protocol errors, limits, timeouts, refusals). */
export function statusBody(code: number, message: string): { contentType: string; body: string } {
  const reason = REASONS[code] ?? (code < 500 ? "BadRequest" : "InternalError");
  return { contentType: "application/json", body: JSON.stringify(statusObject(code, message, reason)) };
}

export function sendStatus(
  res: ServerResponse,
  code: number,
  message: string,
  opts: { reason?: string; details?: Record<string, unknown>; retryAfter?: number } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(statusObject(code, message, opts.reason, opts.details));
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-cache, private",
  };
  if (opts.retryAfter) headers["retry-after"] = opts.retryAfter;
  res.writeHead(code, headers);
  res.end(body);
}
