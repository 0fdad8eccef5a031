/**
 * One error type with a code, as undici does: callers decide on `code`, never on message text.
 * Errors made by this project are `LiteError`s; errors that enter from node/Deno sockets (some of
 * which carry no code, e.g. a timeout or a hang-up reported only in words) are classified once, where
 * they enter (lib/upstream), by `withCode`.
 */

export class LiteError extends Error {
  readonly code: string;
  /** HTTP/2: the server never processed the request (refused stream, GOAWAY), so it may be sent again. */
  readonly retryable: boolean;

  constructor(code: string, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "LiteError";
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/** A foreign error that says what happened only in its message. */
const BY_MESSAGE: [RegExp, string][] = [
  [/timed? ?out/i, "ETIMEDOUT"],
  [/socket hang up|connection reset/i, "ECONNRESET"],
  [/connection refused/i, "ECONNREFUSED"],
  [/broken pipe/i, "EPIPE"],
];

/** The code of an error that carries none of its own: what its message says, else EUNKNOWN. */
export function codeOf(err: unknown): string {
  const own = (err as { code?: unknown } | null)?.code;
  if (typeof own === "string" && own) return own;
  const message = err instanceof Error ? err.message : String(err);
  for (const [re, code] of BY_MESSAGE) if (re.test(message)) return code;
  return "EUNKNOWN";
}

/**
 * The error as a LiteError, for an error that enters from outside (a socket, a TLS handshake):
 * same message, a code (its own, or one read from its message), the original as `cause`.
 */
export function withCode(err: unknown): LiteError {
  if (err instanceof LiteError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new LiteError(codeOf(err), message, { cause: err });
}
