/**
 * `lite-apiserver status`: asks the admin listener for `/status` and prints a summary. Doubles as
 * a probe: exit 0 online and healthy, 1 offline or unhealthy, 2 when the admin listener cannot be
 * reached (or the flags are wrong).
 */
import { ConfigError } from "../config/errors.ts";
import { defaultOf, type Flag, flagValue, helpText, parseFlags } from "../config/flags.ts";
import { SERVE_FLAGS } from "../config/serve_config.ts";
import type { StatusReport } from "../admin/status.ts";

const USAGE = `Usage: lite-apiserver status [flags]

Prints online/offline, the upstream endpoints and their health, the cache per identity, client
certificate expiries and the write queue, read from the admin listener.
Exit code: 0 online and healthy, 1 offline or unhealthy, 2 admin listener unreachable.`;

/** `status`'s flags; the admin listener's address and port default to `serve`'s own. */
const STATUS_FLAGS: readonly Flag[] = [
  { name: "admin-url", arg: "URL", help: "the admin listener (default: http://ADMIN-ADDRESS:ADMIN-PORT)" },
  { name: "admin-address", arg: "IP", help: "its address", default: defaultOf(SERVE_FLAGS, "admin-address") },
  { name: "admin-port", arg: "PORT", help: "its port", default: defaultOf(SERVE_FLAGS, "admin-port") },
  { name: "timeout", arg: "SECONDS", help: "give up after this long", default: "5" },
  { name: "json", help: "print the raw JSON report" },
];

interface StatusArgs {
  url: string;
  json: boolean;
  timeoutMs: number;
}

function parseArgs(args: string[]): StatusArgs | null {
  const p = parseFlags("status", STATUS_FLAGS, args);
  if (p.help) {
    console.log(helpText(USAGE, STATUS_FLAGS));
    return null;
  }
  const get = (name: string) => flagValue(STATUS_FLAGS, p, name)!;
  const port = get("admin-port"), address = get("admin-address"), timeout = get("timeout");
  if (!/^\d+$/.test(port) || Number(port) > 65535) {
    throw new ConfigError(`--admin-port: "${port}" is not a port`);
  }
  if (port === "0") {
    throw new ConfigError("--admin-port 0 means the admin listener is disabled: nothing to ask");
  }
  const timeoutMs = Number(timeout) * 1000;
  if (!(timeoutMs > 0)) throw new ConfigError(`--timeout: "${timeout}" is not a number of seconds`);
  const url = flagValue(STATUS_FLAGS, p, "admin-url") ??
    `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`--admin-url: "${url}" is not a URL`);
  }
  return { url: url.replace(/\/+$/, ""), json: p.given.has("json"), timeoutMs };
}

/** Formats a byte count as B / KiB / MiB / GiB. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) n /= 1024, i++;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Formats seconds as e.g. `41d 3h`, `2h 5m`, `59s` (negative: `expired 3h ago`). */
export function formatSeconds(s: number): string {
  if (s < 0) return `expired ${formatSeconds(-s)} ago`;
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The human-readable summary of a status report. */
export function formatStatus(r: StatusReport, url: string): string {
  const out: string[] = [];
  const state = r.online ? "ONLINE" : "OFFLINE";
  out.push(
    `lite-apiserver ${r.version} at ${url}: ${state}${r.healthy ? "" : " (unhealthy)"}, up ${
      formatSeconds(r.uptimeSeconds)
    }`,
  );
  out.push(`  state since ${r.stateSince}, ${r.transitions} transition(s)`);
  out.push("Upstream endpoints:");
  for (const e of r.endpoints) {
    const lat = e.latencyMs === undefined ? "" : ` ${e.latencyMs} ms`;
    const err = e.lastError ? `  last error: ${e.lastError}` : "";
    out.push(`  ${e.healthy ? "healthy  " : "UNHEALTHY"} ${e.url}${lat}${err}`);
  }
  if (r.cache) {
    const c = r.cache;
    out.push(`Cache (${c.backend}): ${c.entries} entries, ${c.items} items, ${formatBytes(c.bytes)}`);
    for (const i of c.identities) {
      out.push(
        `  ${i.identity.padEnd(32)} ${String(i.entries).padStart(6)} entries ${
          String(i.items).padStart(7)
        } items ${formatBytes(i.bytes).padStart(10)}`,
      );
    }
  } else out.push(`Cache: unknown${r.cacheError ? ` (${r.cacheError})` : ""}`);
  if (r.certs.length) {
    out.push("Client certificates:");
    for (const c of r.certs) {
      const exp = c.expiresInSeconds === undefined
        ? ""
        : ` expires ${c.notAfter} (${formatSeconds(c.expiresInSeconds)})`;
      out.push(`  ${c.cn || c.certFile}${exp}${c.problem ? `  PROBLEM: ${c.problem}` : ""}`);
    }
  }
  const q = r.queue;
  out.push(
    `Write queue: ${q.depth} queued (${
      formatBytes(q.bytes)
    }), ${q.written} written, ${q.dropped} dropped, ${q.failed} failed`,
  );
  if (q.failing) {
    out.push(
      `  FAILING since ${q.failing.since}: ${q.failing.error} (${q.failing.failedOps} lost, last ${q.failing.last})`,
    );
  } else if (q.lastFailure) {
    out.push(`  last failure ${q.lastFailure.last}: ${q.lastFailure.error} (writes succeed again)`);
  }
  out.push(`Held offline watches: ${r.heldWatches}   Memory (RSS): ${formatBytes(r.rssBytes)}`);
  for (const p of r.problems) out.push(`! ${p}`);
  return out.join("\n");
}

/** Runs `lite-apiserver status`; returns the exit code. */
export async function statusCommand(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  if (!opts) return 0;
  let report: StatusReport;
  try {
    const res = await fetch(`${opts.url}/status`, { signal: AbortSignal.timeout(opts.timeoutMs) });
    if (!res.ok) {
      await res.body?.cancel();
      console.error(
        `lite-apiserver status: ${opts.url}/status answered ${res.status}: is this lite-apiserver's admin listener?`,
      );
      return 2;
    }
    report = await res.json() as StatusReport;
  } catch (e) {
    console.error(
      `lite-apiserver status: cannot reach the admin listener at ${opts.url}: ${
        reason(e as Error, opts.timeoutMs)
      }`,
    );
    return 2;
  }
  console.log(opts.json ? JSON.stringify(report, null, 2) : formatStatus(report, opts.url));
  return report.online && report.healthy ? 0 : 1;
}

/** A short reason for a failed fetch (Deno's own message nests the OS error in its cause). */
function reason(err: Error, timeoutMs: number): string {
  if (err.name === "TimeoutError") return `no answer within ${timeoutMs / 1000}s`;
  const text = `${err.message} ${String((err as { cause?: unknown }).cause ?? "")}`;
  if (/connection refused/i.test(text)) {
    return "connection refused (is lite-apiserver running with its admin listener on?)";
  }
  const os = /: ([^:()]+) \(os error \d+\)/.exec(text);
  return os ? os[1].toLowerCase() : err.message.split("\n")[0];
}
