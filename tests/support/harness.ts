/**
 * End-to-end helpers: a test cluster (PKI + simulated apiserver), the real lite-apiserver process
 * started from main.ts, kubeconfigs, kubectl, and an HTTPS client with client certificates.
 * Everything waits on conditions (log lines, ports, events), never on fixed sleeps.
 */
import { type CertPair, createPki, type Pki } from "./pki.ts";
import { type FakeApiServer, startFakeApiServer, type WireMode, type WireModeName } from "./apiserver/mod.ts";
import { V8_FLAGS } from "../../scripts/compile.ts";

export const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
/** Where kubectl.1.27 ... kubectl.1.33 live (KUBECTL_DIR overrides, e.g. in GitHub Actions). */
export const KUBECTL_DIR = Deno.env.get("KUBECTL_DIR") || "/usr/lib/google-cloud-sdk/bin";
export const TOKENS = {
  "reader-token": { user: "reader", groups: ["readers"] },
  "admin-token": { user: "admin", groups: ["system:masters"] },
  // A pod's ServiceAccount token (in-cluster clients).
  "flannel-sa-token": {
    user: "system:serviceaccount:kube-flannel:flannel",
    groups: ["system:serviceaccounts", "system:serviceaccounts:kube-flannel"],
  },
};

export interface Cluster {
  pki: Pki;
  apiserver: FakeApiServer;
  /** lite-apiserver's serving pair. */
  serving: CertPair;
  /** kubelet's client pair (CN system:node:edge-1), registered in tls-config. */
  kubelet: CertPair;
  dir: string;
  tlsConfigFile: string;
  close(): Promise<void>;
  /** `await using cluster = await startCluster()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * LITE_TEST_UPSTREAM_H2=<maxStreams>[,nginx]: every test cluster's apiserver speaks HTTP/2 (the
 * codec front by default, or nginx).
 */
function h2FromEnv(): { maxStreams: number; impl: "codec" | "nginx" } | undefined {
  const v = Deno.env.get("LITE_TEST_UPSTREAM_H2");
  if (!v) return undefined;
  const [count, impl = "codec"] = v.split(",");
  const n = Number(count);
  if (!Number.isInteger(n) || n < 1 || (impl !== "codec" && impl !== "nginx")) {
    throw new Error(`LITE_TEST_UPSTREAM_H2=${v}: expected <stream count>[,codec|nginx]`);
  }
  return { maxStreams: n, impl };
}

export async function startCluster(
  opts: {
    bookmarkIntervalMs?: number;
    /** Extra bearer tokens (e.g. a ServiceAccount's). */
    tokens?: Record<string, { user: string; groups?: string[] }>;
    /** Node lifecycle time scale: ms per tolerationSecond (default 1000). */
    tolerationSecondMs?: number;
    /** Serve through the wire relay in this wire mode (apiserver/wire_modes.ts); default: plain TLS. */
    wire?: WireMode | WireModeName;
    /**
     * The cloud speaks HTTP/2 (nginx in front, announcing maxStreams). Default: from the
     * environment, LITE_TEST_UPSTREAM_H2=<maxStreams> (e.g. 100), so any e2e test runs against an
     * HTTP/2 cloud unchanged; unset, HTTP/1.1 only.
     */
    http2?: { maxStreams?: number; impl?: "codec" | "nginx" } | false;
  } = {},
): Promise<Cluster> {
  const pki = await createPki();
  const apiserverPair = await pki.server("apiserver");
  const apiserver = await startFakeApiServer({
    caCert: pki.caCert,
    caKey: pki.caKey,
    certFile: apiserverPair.cert,
    keyFile: apiserverPair.key,
    tokens: { ...TOKENS, ...opts.tokens },
    bookmarkIntervalMs: opts.bookmarkIntervalMs,
    wire: opts.wire,
    tolerationSecondMs: opts.tolerationSecondMs,
    // false: HTTP/1.1 only, whatever the environment says.
    http2: opts.http2 === false ? undefined : opts.http2 ?? h2FromEnv(),
  });
  // The SANs in-cluster clients verify (README "In-cluster clients"), and the node address 127.0.0.2.
  const serving = await pki.server("lite-apiserver", [
    "IP:127.0.0.2",
    "IP:10.96.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ]);
  const kubelet = await pki.client("system:node:edge-1", ["system:nodes"], { name: "kubelet-client" });
  const tlsConfigFile = `${pki.dir}/tls-config.json`;
  await Deno.writeTextFile(
    tlsConfigFile,
    JSON.stringify([{ cert: kubelet.combined, key: kubelet.combined }]),
  );
  const close = async () => {
    await apiserver.close();
    await Deno.remove(pki.dir, { recursive: true }).catch(() => {});
  };
  return {
    pki,
    apiserver,
    serving,
    kubelet,
    dir: pki.dir,
    tlsConfigFile,
    close,
    [Symbol.asyncDispose]: close,
  };
}

export interface LiteProcess {
  url: string;
  port: number;
  adminUrl?: string;
  lines: string[];
  waitForLine(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  status: Promise<Deno.CommandStatus>;
  child: Deno.ChildProcess;
  /** `await using lite = ...` stops the process (SIGTERM) at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * How to start main.ts: a command and the arguments before `main.ts` (e.g. an emulated arm64 Deno),
 * or with `entry: false` a command that is the program itself (a compiled release binary).
 */
export interface LiteLauncher {
  cmd: string;
  args: string[];
  entry?: boolean;
}

/** How lite-apiserver runs from source: with the release binary's V8 flags (deploy/v8-flags). */
export const SOURCE_LAUNCH_ARGS = ["run", "-A", "--quiet", `--v8-flags=${V8_FLAGS.join(",")}`];

/**
 * Runs `deno run -A --v8-flags=<deploy/v8-flags> main.ts <args>` (or `<launcher.cmd> <launcher.args> main.ts <args>`) and collects its
 * output (stdout and stderr) line by line.
 */
export function runLite(args: string[], env: Record<string, string> = {}, launcher?: LiteLauncher) {
  const child = new Deno.Command(launcher?.cmd ?? Deno.execPath(), {
    args: [
      ...(launcher?.args ?? SOURCE_LAUNCH_ARGS),
      ...(launcher?.entry === false ? [] : [`${ROOT}/main.ts`]),
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // No update check: it would reach dl.deno.land (through HTTPS_PROXY when a test sets one).
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        for (const w of waiters) w();
      }
    }
    if (buf) lines.push(buf);
    for (const w of waiters) w();
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = pumps.then(() => child.status);
  let exited = false;
  status.then(() => {
    exited = true;
    for (const w of waiters) w();
  });
  const waitForLine = (re: RegExp, timeoutMs = 30_000, from = 0): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = lines.slice(from).find((l) => re.test(l));
        if (hit !== undefined) {
          cleanup();
          resolve(hit);
        } else if (exited) {
          cleanup();
          reject(new Error(`process exited before a line matching ${re}:\n${lines.join("\n")}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no line matching ${re} within ${timeoutMs}ms:\n${lines.slice(-30).join("\n")}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    child,
    lines,
    status,
    waitForLine,
    async kill(signal: Deno.Signal = "SIGTERM") {
      if (!exited) {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      }
      return await status;
    },
    async [Symbol.asyncDispose]() {
      await this.kill();
    },
  };
}

export interface LiteOptions {
  cacheDir?: string;
  backend?: "sqlite" | "file";
  extra?: string[];
  upstream?: string;
  env?: Record<string, string>;
  /** Start the admin listener on a free port (default true); false passes `--admin-port 0` (disabled). */
  admin?: boolean;
  /** How to run main.ts (default: this Deno, `run -A --quiet`). */
  launcher?: LiteLauncher;
}

/** A free TCP port on 127.0.0.1 (bound, read, released), for flags where 0 does not mean random. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts lite-apiserver against the cluster on a random port and waits until it serves. */
export async function startLite(
  cluster: Cluster,
  opts: LiteOptions = {},
): Promise<LiteProcess & { cacheDir: string }> {
  const cacheDir = opts.cacheDir ?? await Deno.makeTempDir({ prefix: "lite-cache-" });
  const admin = opts.admin ?? true;
  // The admin port is picked here (0 disables it): another test may take it in between, so retry.
  for (let attempt = 1;; attempt++) {
    const adminPort = admin ? freePort() : 0;
    try {
      return await spawnLite(cluster, opts, cacheDir, adminPort);
    } catch (e) {
      if (attempt >= 3 || !/admin-port \d+: .* already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function spawnLite(
  cluster: Cluster,
  opts: LiteOptions,
  cacheDir: string,
  adminPort: number,
): Promise<LiteProcess & { cacheDir: string }> {
  const args = [
    "serve",
    "--kube-apiserver-url",
    opts.upstream ?? cluster.apiserver.url,
    "--ca-file",
    cluster.pki.caCert,
    "--tls-cert-file",
    cluster.serving.cert,
    "--tls-private-key-file",
    cluster.serving.key,
    "--tls-config-file",
    cluster.tlsConfigFile,
    "--port",
    "0",
    "--admin-port",
    String(adminPort),
    "--cache-backend",
    opts.backend ?? "sqlite",
    "--cache-dir",
    cacheDir,
    "--backend-timeout",
    "1s",
    "--health-check-interval",
    "500ms",
    // Two in a row: on a loaded machine one probe may miss its 500 ms, and that is not a cut.
    "--health-check-failures",
    "2",
    ...(opts.extra ?? []),
  ];
  const p = runLite(args, opts.env, opts.launcher);
  const line = await p.waitForLine(/listening on https:\/\/\S+:(\d+)/);
  const port = Number(/listening on https:\/\/\S+?:(\d+)/.exec(line)![1]);
  // --admin-port 0 disables the admin listener; otherwise wait for it (logged before "configuration").
  const adminLine = adminPort ? await p.waitForLine(/admin listening on (http:\/\/\S+)/) : undefined;
  const adminUrl = adminLine ? /admin listening on (http:\/\/\S+)/.exec(adminLine)?.[1] : undefined;
  return { ...p, url: `https://127.0.0.1:${port}`, port, adminUrl, cacheDir };
}

/** A kubeconfig for `server` with either a client pair or a token. */
export async function writeKubeconfig(
  dir: string,
  name: string,
  server: string,
  ca: string,
  user: { cert: string; key: string } | { token: string },
): Promise<string> {
  const path = `${dir}/${name}.kubeconfig`;
  const u = "token" in user
    ? `    token: ${user.token}`
    : `    client-certificate: ${user.cert}\n    client-key: ${user.key}`;
  await Deno.writeTextFile(
    path,
    `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: ${server}
    certificate-authority: ${ca}
users:
- name: u
  user:
${u}
contexts:
- name: ctx
  context:
    cluster: c
    user: u
    namespace: default
current-context: ctx
`,
  );
  return path;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function kubectl(version: string, kubeconfig: string, args: string[]): Promise<KubectlResult> {
  const out = await commandOutput(`${KUBECTL_DIR}/kubectl.${version}`, {
    args: ["--kubeconfig", kubeconfig, "--request-timeout=20s", ...args],
    stdout: "piped",
    stderr: "piped",
    env: {
      HOME: Deno.env.get("HOME") ?? "/root",
      KUBECACHEDIR: `${Deno.env.get("TMPDIR") ?? "/tmp"}/kubectl-cache-${crypto.randomUUID()}`,
    },
  }, `kubectl ${version} ${args.join(" ")}`);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Spawns a long-running kubectl (e.g. `get -w`) whose output lines can be awaited. */
export function kubectlStream(version: string, kubeconfig: string, args: string[]) {
  const child = new Deno.Command(`${KUBECTL_DIR}/kubectl.${version}`, {
    args: ["--kubeconfig", kubeconfig, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { HOME: Deno.env.get("HOME") ?? "/root", KUBECACHEDIR: `/tmp/kubectl-cache-${crypto.randomUUID()}` },
  }).spawn();
  return child;
}

export interface HttpsClient {
  request(path: string, init?: RequestInit): Promise<Response>;
  json(
    path: string,
    init?: RequestInit,
  ): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>;
  close(): void;
}

/** An HTTPS client for `base` trusting the test CA, optionally with a client pair or a token. */
export function httpsClient(
  base: string,
  caPem: string,
  who: { pair?: CertPair; token?: string } = {},
): HttpsClient {
  const client = Deno.createHttpClient({
    caCerts: [caPem],
    ...(who.pair ? { cert: who.pair.certPem, key: who.pair.keyPem } : {}),
    http2: false,
  });
  const request = async (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (who.token) headers.set("authorization", `Bearer ${who.token}`);
    if (init.signal) return await fetch(`${base}${path}`, { ...init, headers, client });
    // Bounded: a response head that never comes fails the test with what it waited for.
    const what = `${init.method ?? "GET"} ${path}`;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no response to ${what} within 60 s`)), 60_000);
    try {
      return await fetch(`${base}${path}`, { ...init, headers, client, signal: ctl.signal });
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    request,
    async json(path, init) {
      const res = await request(path, init);
      const text = await within(res.text(), `the body of ${init?.method ?? "GET"} ${path}`, 60_000);
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text);
      } catch {
        body = { raw: text };
      }
      return { status: res.status, body, headers: res.headers };
    },
    close: () => client.close(),
  };
}

/** Polls `fn` until it returns a truthy value (a condition, not a sleep), failing after timeoutMs. */
export async function eventually<T>(
  fn: () => T,
  what: string,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<Awaited<T>>;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

/** `p`, or a rejection after `timeoutMs` saying what was awaited: every wait in the suite is bounded. */
export async function within<T>(p: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads a text stream until `done(text so far)` holds; fails if the stream ends first or nothing
 * satisfying arrives within `timeoutMs`. Returns all the text read (after `seen`).
 */
export async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  done: (text: string) => boolean,
  what: string,
  timeoutMs = 15_000,
  seen = "",
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = seen;
  while (!done(text)) {
    const next = await within(
      reader.read(),
      `${what}; read so far: ${text.slice(-300)}`,
      deadline - Date.now(),
    );
    if (next.done) throw new Error(`the stream ended before ${what}; read: ${text.slice(-300)}`);
    text += next.value;
  }
  return text;
}

/** Reads until the stream ends (the server closed it), failing after `timeoutMs`. */
export async function readToEnd(
  reader: ReadableStreamDefaultReader<unknown>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await within(reader.read(), what, deadline - Date.now())).done) { /* drain */ }
}

/** The exit status of a process started by runLite, killing it if it has not exited within `timeoutMs`. */
export async function exitOf(
  p: { status: Promise<Deno.CommandStatus>; kill(signal?: Deno.Signal): Promise<Deno.CommandStatus> },
  what: string,
  timeoutMs = 30_000,
): Promise<Deno.CommandStatus> {
  try {
    return await within(p.status, `${what} to exit`, timeoutMs);
  } catch (e) {
    await p.kill("SIGKILL");
    throw e;
  }
}

/** Runs a command to completion, killing it and failing with `what` if it takes over `timeoutMs`. */
export async function commandOutput(
  cmd: string | URL,
  opts: Deno.CommandOptions,
  what: string,
  timeoutMs = 60_000,
): Promise<Deno.CommandOutput> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const out = await new Deno.Command(cmd, { ...opts, signal: ctl.signal }).output();
    if (ctl.signal.aborted) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} to finish`);
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** A JSON watch stream read event by event; every wait is bounded and says what it waited for. */
export class WatchStream<E = { type: string; object: Record<string, unknown> }> {
  /** Every event read so far, in order. */
  readonly events: E[] = [];
  /** True once the server ended the stream. */
  ended = false;
  #buf = "";
  readonly #reader: ReadableStreamDefaultReader<string>;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Reads until `done(events)` holds (true) or the stream ends first (false); fails after `timeoutMs`. */
  async until(done: (events: E[]) => boolean, what: string, timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.events)) {
      if (this.ended) return false;
      const next = await within(this.#reader.read(), what, deadline - Date.now());
      if (next.done) {
        this.ended = true;
        return false;
      }
      this.#buf += next.value;
      let nl;
      while ((nl = this.#buf.indexOf("\n")) >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line) this.events.push(JSON.parse(line));
      }
    }
    return true;
  }

  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => {});
  }
}
