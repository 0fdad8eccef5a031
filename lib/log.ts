/**
 * One-line-per-event logging, text or JSON, with levels.
 * Never pass tokens, keys or object bodies as fields: log statements are the only guard.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type Fields = Record<string, string | number | boolean | undefined>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** A logger's settings live on the instance; the process shares one, `log`. */
export class Logger {
  #threshold = ORDER.info;
  #format: LogFormat = "text";
  #sink: (line: string) => void = (line) => console.error(line);

  configure(opts: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void }): void {
    if (opts.level) this.#threshold = ORDER[opts.level];
    if (opts.format) this.#format = opts.format;
    if (opts.sink) this.#sink = opts.sink;
  }

  enabled(level: LogLevel): boolean {
    return ORDER[level] >= this.#threshold;
  }

  debug = (msg: string, fields?: Fields) => this.#emit("debug", msg, fields);
  info = (msg: string, fields?: Fields) => this.#emit("info", msg, fields);
  warn = (msg: string, fields?: Fields) => this.#emit("warn", msg, fields);
  error = (msg: string, fields?: Fields) => this.#emit("error", msg, fields);

  #emit(level: LogLevel, msg: string, fields?: Fields): void {
    if (ORDER[level] < this.#threshold) return;
    const time = new Date().toISOString();
    if (this.#format === "json") {
      this.#sink(JSON.stringify({ time, level, msg, ...fields }));
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) line += ` ${k}=${quote(String(v))}`;
      }
    }
    this.#sink(line);
  }
}

function quote(v: string): string {
  return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
}

export const log = new Logger();

export function configureLog(opts: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void }) {
  log.configure(opts);
}

export function logEnabled(level: LogLevel): boolean {
  return log.enabled(level);
}
