/**
 * Benchmark helpers: installing the reference tools (wrk, nginx) when missing, running wrk and
 * parsing its report, an nginx TLS reverse proxy in a temp dir, and latency percentiles.
 */

/** True when `cmd` runs (exit status ignored). */
async function has(cmd: string, args: string[]): Promise<boolean> {
  try {
    await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

async function apt(args: string[]): Promise<boolean> {
  const root = Deno.uid() === 0;
  const cmd = root ? "apt-get" : "sudo";
  const full = root ? args : ["-n", "apt-get", ...args];
  try {
    const out = await new Deno.Command(cmd, {
      args: full,
      stdout: "null",
      stderr: "piped",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Makes sure `cmd` exists, installing the first Debian package of `packages` that installs
 * (`apt-get update` once if a plain install fails). Returns false if it is still missing.
 */
export async function ensureTool(cmd: string, probeArgs: string[], packages: string[]): Promise<boolean> {
  if (await has(cmd, probeArgs)) return true;
  console.error(`bench: ${cmd} is missing; installing ${packages.join(" or ")} with apt-get`);
  for (const updated of [false, true]) {
    if (updated && !await apt(["update"])) break;
    for (const p of packages) {
      if (await apt(["install", "-y", "--no-install-recommends", p]) && await has(cmd, probeArgs)) {
        return true;
      }
    }
  }
  console.error(`bench: could not install ${cmd}; its measurements are skipped`);
  return false;
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

/** Runs wrk with a bearer token over keep-alive connections and parses req/s and p50/p99. */
export async function wrk(
  url: string,
  opts: { connections: number; seconds: number; token?: string },
): Promise<WrkResult> {
  const threads = Math.min(2, opts.connections);
  const args = ["-t", String(threads), "-c", String(opts.connections), "-d", `${opts.seconds}s`, "--latency"];
  if (opts.token) args.push("-H", `Authorization: Bearer ${opts.token}`);
  args.push(url);
  const out = await new Deno.Command("wrk", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = non2xx + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
  return { rps, p50Ms: p50, p99Ms: p99, requests, errors };
}

export interface Nginx {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/** The parts of an nginx.conf that every bench nginx shares: one worker, files under `dir`. */
function nginxConf(dir: string, server: string): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${server}
}
`;
}

/** Runs nginx on `conf` in `dir` (unprivileged, in the foreground) and waits for its port. */
async function runNginx(dir: string, conf: string, port: number): Promise<Nginx> {
  const file = `${dir}/nginx.conf`;
  await Deno.writeTextFile(file, conf);
  const child = new Deno.Command("nginx", {
    args: ["-p", dir, "-c", file, "-g", "daemon off;"],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const url = `https://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill();
        const err = new TextDecoder().decode((await child.output()).stderr);
        throw new Error(`nginx did not start: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    pid: child.pid,
    async close() {
      try {
        child.kill("SIGQUIT");
      } catch { /* gone */ }
      await child.output();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * nginx as a TLS reverse proxy with a keep-alive upstream pool, one worker (lite-apiserver is
 * one process too), everything (pid, logs, temp dirs) under a temp dir so it runs unprivileged.
 */
export async function startNginx(
  opts: { port: number; upstreamPort: number; cert: string; key: string },
): Promise<Nginx> {
  const dir = await Deno.makeTempDir({ prefix: "bench-nginx-" });
  return runNginx(
    dir,
    nginxConf(
      dir,
      `  upstream apiserver {
    server 127.0.0.1:${opts.upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${opts.port} ssl;
    ssl_certificate ${opts.cert};
    ssl_certificate_key ${opts.key};
    location / {
      proxy_pass https://apiserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_session_reuse on;
      proxy_buffering off;
    }
  }`,
    ),
    opts.port,
  );
}

/**
 * nginx as the upstream: answers every path with the same JSON body over TLS, as fast as a
 * server can, so that what is measured in front of it is the proxy.
 */
export async function startNginxUpstream(
  opts: { port: number; cert: string; key: string; body: string; http2?: boolean },
): Promise<Nginx> {
  const dir = await Deno.makeTempDir({ prefix: "bench-nginx-upstream-" });
  await Deno.writeTextFile(`${dir}/object.json`, opts.body);
  // nginx's worker runs as an unprivileged user when started as root: it must read the body.
  await Deno.chmod(dir, 0o755);
  await Deno.chmod(`${dir}/object.json`, 0o644);
  return runNginx(
    dir,
    nginxConf(
      dir,
      `  server {
    listen 127.0.0.1:${opts.port} ssl${opts.http2 ? " http2" : ""};
    http2_max_concurrent_streams 1000;
    ssl_certificate ${opts.cert};
    ssl_certificate_key ${opts.key};
    root ${dir};
    default_type application/json;
    location / { try_files /object.json =404; }
  }`,
    ),
    opts.port,
  );
}

/** The q-th percentile (0-100) of a sample, nearest rank. */
export function percentile(values: number[], q: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q / 100 * s.length) - 1))];
}

/** VmRSS of a process in bytes (Linux), or NaN. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Anonymous (heap, stacks, buffers) memory of a process in bytes (Linux smaps_rollup), or NaN. */
export function anonymousOf(pid: number): number {
  try {
    const m = /^Anonymous:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
