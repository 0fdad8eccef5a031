/**
 * One-line-per-event logging, text or JSON, with levels.
 * Never pass tokens, keys or object bodies as fields: log statements are the only guard.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type Fields = Record<string, string | number | boolean | undefined>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

let threshold = ORDER.info;
let format: LogFormat = "text";
let sink: (line: string) => void = (line) => console.error(line);

export function configureLog(opts: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void }) {
  if (opts.level) threshold = ORDER[opts.level];
  if (opts.format) format = opts.format;
  if (opts.sink) sink = opts.sink;
}

export function logEnabled(level: LogLevel): boolean {
  return ORDER[level] >= threshold;
}

function quote(v: string): string {
  return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
}

function emit(level: LogLevel, msg: string, fields?: Fields) {
  if (ORDER[level] < threshold) return;
  const time = new Date().toISOString();
  if (format === "json") {
    sink(JSON.stringify({ time, level, msg, ...fields }));
    return;
  }
  let line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined) line += ` ${k}=${quote(String(v))}`;
    }
  }
  sink(line);
}

export const log = {
  debug: (msg: string, fields?: Fields) => emit("debug", msg, fields),
  info: (msg: string, fields?: Fields) => emit("info", msg, fields),
  warn: (msg: string, fields?: Fields) => emit("warn", msg, fields),
  error: (msg: string, fields?: Fields) => emit("error", msg, fields),
};
