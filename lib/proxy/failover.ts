/**
 * When a failed attempt moves on to the next upstream endpoint: the failure is one of reaching the
 * endpoint (not an answer), the request can be sent again, and there is another endpoint to try.
 */

const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * The endpoint could not be reached or dropped the connection before answering. Decided on the code
 * alone: lib/upstream gives every error one where it enters (lib/errors.ts withCode).
 */
export function isConnectError(err: { code?: string }): boolean {
  return CONNECT_ERRORS.has(err.code ?? "");
}

export function shouldFailOver(
  err: { code?: string },
  attempt: number,
  endpoints: number,
  replayable: boolean,
): boolean {
  return attempt + 1 < endpoints && replayable && isConnectError(err);
}
