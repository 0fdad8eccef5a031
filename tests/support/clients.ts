/**
 * Real clients as bounded processes: kubectl with its own deadline, and curl sending several
 * requests on one keep-alive connection. A process that outlives its bound is killed and the
 * failure says what it was waiting for.
 */
import { KUBECTL_DIR } from "./harness.ts";

export interface ProcResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args`, killed after `timeoutMs`; the error names `what`. */
export async function runBounded(
  cmd: string,
  args: string[],
  what: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<ProcResult> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { HOME: Deno.env.get("HOME") ?? "/root", ...env },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  const res = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  if (timedOut) {
    throw new Error(`${what}: no result within ${timeoutMs} ms (killed); stderr: ${res.stderr.slice(-600)}`);
  }
  return res;
}

/** kubectl `version` (1.27 ... 1.33) with a fresh discovery cache, bounded by `timeoutMs`. */
export function kubectlBounded(
  version: string,
  kubeconfig: string,
  args: string[],
  timeoutMs = 20_000,
): Promise<ProcResult> {
  return runBounded(
    `${KUBECTL_DIR}/kubectl.${version}`,
    ["--kubeconfig", kubeconfig, `--request-timeout=${Math.floor(timeoutMs / 2000)}s`, ...args],
    `kubectl ${version} ${args.join(" ")}`,
    timeoutMs,
    { KUBECACHEDIR: `${Deno.env.get("TMPDIR") ?? "/tmp"}/kubectl-cache-${crypto.randomUUID()}` },
  );
}

/** One answer of a curl keep-alive run. */
export interface CurlAnswer {
  url: string;
  status: number;
  /** New connections opened for this transfer (0 = reused the previous one). */
  connects: number;
  body: string;
  contentEncoding: string;
}

/** Who curl is. */
export type CurlAuth = { cert: string; key: string } | { token: string };

/**
 * Fetches `urls` with one curl (HTTP/1.1), which sends them one after another on one keep-alive
 * connection; `compressed` asks for gzip. Throws if curl is not done within `timeoutMs`.
 */
export async function curlKeepAlive(
  urls: string[],
  opts: { ca: string; auth: CurlAuth; compressed?: boolean; timeoutMs?: number; what: string },
): Promise<CurlAnswer[]> {
  const dir = await Deno.makeTempDir({ prefix: "curl-ka-" });
  try {
    const args = ["-sS", "--http1.1", "--cacert", opts.ca, "--max-time", "10"];
    if ("token" in opts.auth) args.push("-H", `Authorization: Bearer ${opts.auth.token}`);
    else args.push("--cert", opts.auth.cert, "--key", opts.auth.key);
    if (opts.compressed) args.push("--compressed");
    args.push("-w", "%{http_code} %{num_connects} %header{content-encoding}\\n");
    urls.forEach((u, i) => args.push(u, "-o", `${dir}/${i}`));
    const r = await runBounded("curl", args, `curl ${opts.what}`, opts.timeoutMs ?? 30_000);
    const lines = r.stdout.trim().split("\n");
    if (lines.length !== urls.length) {
      throw new Error(
        `curl ${opts.what}: ${lines.length} answers for ${urls.length} URLs (exit ${r.code}): ${r.stderr}`,
      );
    }
    return await Promise.all(urls.map(async (url, i) => {
      const [status, connects, enc] = lines[i].split(" ");
      const body = await Deno.readTextFile(`${dir}/${i}`).catch(() => "");
      return { url, status: Number(status), connects: Number(connects), body, contentEncoding: enc ?? "" };
    }));
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** One JSON line printed by a client-library driver (tests/support/clients/*). */
export type ClientEvent = { event: string; [k: string]: unknown };

/** A client-library driver process: its JSON event lines, and commands on its stdin. */
export interface ClientProcess {
  events: ClientEvent[];
  /** Resolves with the first event from index `from` on that matches, or fails after timeoutMs. */
  waitFor(
    pred: (e: ClientEvent) => boolean,
    what: string,
    timeoutMs?: number,
    from?: number,
  ): Promise<ClientEvent>;
  /** Sends a command line (e.g. "dump t1", "list t2") and waits for its answer with that tag. */
  ask(cmd: "dump" | "list", what: string, timeoutMs?: number): Promise<ClientEvent>;
  stderr(): string;
  kill(): Promise<void>;
}

/** Starts a driver (`cmd args`) that prints JSON lines and reads commands on stdin. */
export function startClientProcess(name: string, cmd: string, args: string[]): ClientProcess {
  const child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  let err = "";
  let exited = false;
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ event: "output", line });
        }
      }
      wake();
    }
  })();
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      err = (err + chunk).slice(-4000);
    }
  })();
  child.status.then(() => {
    exited = true;
    wake();
  });
  const writer = child.stdin.getWriter();
  let seq = 0;
  const waitFor = (pred: (e: ClientEvent) => boolean, what: string, timeoutMs = 20_000, from = 0) =>
    new Promise<ClientEvent>((resolve, reject) => {
      const check = () => {
        const hit = events.slice(from).find(pred);
        if (hit) done(), resolve(hit);
        else if (exited) {
          done();
          reject(new Error(`${name} exited before ${what}; stderr: ${err.slice(-1500)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        const tail = events.slice(-8).map((e) => JSON.stringify(e).slice(0, 300)).join("\n");
        reject(
          new Error(
            `${name}: no ${what} within ${timeoutMs} ms; last events:\n${tail}\nstderr: ${err.slice(-800)}`,
          ),
        );
      }, timeoutMs);
      const done = () => (clearTimeout(timer), waiters.delete(check));
      waiters.add(check);
      check();
    });
  return {
    events,
    waitFor,
    async ask(cmd, what, timeoutMs = 20_000) {
      const tag = `${cmd}-${++seq}`;
      const from = events.length;
      await writer.write(new TextEncoder().encode(`${cmd} ${tag}\n`));
      return waitFor((e) => e.tag === tag, `an answer to "${cmd}" (${what})`, timeoutMs, from);
    },
    stderr: () => err,
    async kill() {
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}
