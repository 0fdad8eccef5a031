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

/** The endpoint could not be reached or dropped the connection before answering. */
export function isConnectError(err: { code?: string; message: string }): boolean {
  return CONNECT_ERRORS.has(err.code ?? "") || /timeout|socket hang up/i.test(err.message);
}

export function shouldFailOver(
  err: { code?: string; message: string },
  attempt: number,
  endpoints: number,
  replayable: boolean,
): boolean {
  return attempt + 1 < endpoints && replayable && isConnectError(err);
}
