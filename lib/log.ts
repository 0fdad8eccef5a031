/**
 * One-line-per-event logging, text or JSON, with levels.
 * Never pass tokens, keys or object bodies as fields: log statements are the only guard.
 *
 * Lines that can repeat once per connection, request or write (an untrusted certificate, a full
 * disk, the connection cap) name their kind, a stable key: the first line of a kind is written at
 * once, the rest within the kind's window are counted and summarised in one line when the window
 * ends ("... and 299 more like this in the last 10 s"), even if no new line comes. So a peer that
 * repeats a problem 1,000 times a second costs the log one line per window, not 1,000.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type Fields = Record<string, string | number | boolean | undefined>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** How long lines of one kind are counted after one is written (default). */
export const REPEAT_WINDOW_MS = 10_000;
/** Kinds tracked at once; beyond, new kinds share the one overflow kind below. */
export const MAX_KINDS = 256;
export const OVERFLOW_KIND = "log.too-many-kinds";

interface KindState {
  /** When the current window ends: the summary (if any) is written then. */
  windowEnd: number;
  windowStart: number;
  suppressed: number;
  level: LogLevel;
  msg: string;
  fields?: Fields;
}

export interface LogOptions {
  level?: LogLevel;
  format?: LogFormat;
  sink?: (line: string) => void;
  /** The window of a kind of repeated line (ms); tests shorten it. */
  repeatWindowMs?: number;
  /** Kinds tracked at once (bounded memory). */
  maxKinds?: number;
}

/** A logger's settings live on the instance; the process shares one, `log`. */
export class Logger {
  #threshold = ORDER.info;
  #format: LogFormat = "text";
  #sink: (line: string) => void = (line) => console.error(line);
  #windowMs = REPEAT_WINDOW_MS;
  #maxKinds = MAX_KINDS;
  #kinds = new Map<string, KindState>();
  #timer?: ReturnType<typeof setTimeout>;
  #timerAt = Infinity;

  configure(opts: LogOptions): void {
    if (opts.level) this.#threshold = ORDER[opts.level];
    if (opts.format) this.#format = opts.format;
    if (opts.sink) this.#sink = opts.sink;
    if (opts.repeatWindowMs !== undefined) this.#windowMs = Math.max(1, opts.repeatWindowMs);
    if (opts.maxKinds !== undefined) this.#maxKinds = Math.max(1, opts.maxKinds);
  }

  enabled(level: LogLevel): boolean {
    return ORDER[level] >= this.#threshold;
  }

  /** `kind`: a stable key for a line that may repeat; such lines are rate-limited per kind. */
  debug = (msg: string, fields?: Fields, kind?: string) => this.#log("debug", msg, fields, kind);
  info = (msg: string, fields?: Fields, kind?: string) => this.#log("info", msg, fields, kind);
  warn = (msg: string, fields?: Fields, kind?: string) => this.#log("warn", msg, fields, kind);
  error = (msg: string, fields?: Fields, kind?: string) => this.#log("error", msg, fields, kind);

  /** Kinds currently tracked (for tests and the bound). */
  get trackedKinds(): number {
    return this.#kinds.size;
  }

  /** Writes every pending summary now and stops the timer (at shutdown; the logger stays usable). */
  flush(): void {
    this.#stopTimer();
    const kinds = [...this.#kinds.entries()];
    this.#kinds.clear();
    for (const [kind, s] of kinds) if (s.suppressed) this.#summary(kind, s, performance.now());
  }

  [Symbol.dispose](): void {
    this.flush();
  }

  #log(level: LogLevel, msg: string, fields: Fields | undefined, kind: string | undefined): void {
    if (ORDER[level] < this.#threshold) return;
    if (kind === undefined) return this.#emit(level, msg, fields);
    const now = performance.now();
    let s = this.#kinds.get(kind);
    if (!s && this.#kinds.size >= this.#maxKinds) {
      // Bounded memory: a flood of distinct kinds (a bug in a caller) shares one kind.
      kind = OVERFLOW_KIND;
      s = this.#kinds.get(kind);
    }
    if (!s) {
      this.#kinds.set(kind, { windowStart: now, windowEnd: now + this.#windowMs, suppressed: 0, level, msg });
      this.#emit(level, msg, fields);
      this.#schedule(now + this.#windowMs);
      return;
    }
    s.suppressed++;
    // The summary repeats the most severe recent line of the kind.
    if (ORDER[level] >= ORDER[s.level]) Object.assign(s, { level, msg, fields });
  }

  #summary(kind: string, s: KindState, now: number): void {
    const secs = Math.max(1, Math.round((now - s.windowStart) / 1000));
    this.#emit(s.level, `${s.msg} ... and ${s.suppressed} more like this in the last ${secs} s`, {
      ...s.fields,
      repeated: s.suppressed,
      kind: kind === OVERFLOW_KIND ? OVERFLOW_KIND : undefined,
    });
  }

  /** Ends the windows that are due: writes their summaries, forgets quiet kinds. */
  #tick = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [kind, s] of this.#kinds) {
      if (s.windowEnd > now) {
        next = Math.min(next, s.windowEnd);
        continue;
      }
      if (!s.suppressed) {
        this.#kinds.delete(kind);
        continue;
      }
      this.#summary(kind, s, now);
      // A new window starts with the summary, so a steady flood writes one line per window.
      Object.assign(s, {
        windowStart: now,
        windowEnd: now + this.#windowMs,
        suppressed: 0,
        fields: undefined,
      });
      next = Math.min(next, s.windowEnd);
    }
    if (next < Infinity) this.#schedule(next);
  };

  /** One timer for all kinds, at the earliest window end; unref'd so it never keeps the process up. */
  #schedule(at: number): void {
    if (at >= this.#timerAt) return;
    this.#stopTimer();
    this.#timerAt = at;
    const timer = setTimeout(this.#tick, Math.max(0, at - performance.now()));
    Deno.unrefTimer(timer as unknown as number);
    this.#timer = timer;
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #emit(level: LogLevel, msg: string, fields?: Fields): void {
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

export function configureLog(opts: LogOptions) {
  log.configure(opts);
}

export function logEnabled(level: LogLevel): boolean {
  return log.enabled(level);
}
