/**
 * A problem the user can fix (bad flag, unreadable file, mismatched key, port in use...).
 * main.ts prints its message as one line and exits non-zero: never a stack trace.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}
