/**
 * A problem the user can fix (bad flag, unreadable file, mismatched key, port in use...).
 * main.ts prints its message as one line and exits non-zero: never a stack trace.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The message of an unknown thrown value. */
export function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
