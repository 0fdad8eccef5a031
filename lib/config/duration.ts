import { ConfigError } from "./errors.ts";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `3s`, `500ms`, `1m30s`, `2h`, `7d` or plain seconds (`3`, `0.5`) into milliseconds.
 * `what` names the flag in the error message.
 */
export function parseDuration(value: string | number, what: string): number {
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) return Math.round(value * 1000);
    throw new ConfigError(`${what}: "${value}" is not a duration (use e.g. 3s, 500ms, 1m or plain seconds)`);
  }
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(parseFloat(s) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += parseFloat(m[1]) * UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (s === "" || matched !== s.length) {
    throw new ConfigError(`${what}: "${value}" is not a duration (use e.g. 3s, 500ms, 1m or plain seconds)`);
  }
  return Math.round(total);
}

/** Formats milliseconds the way parseDuration reads them back. */
export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
