/**
 * Release build: `deno task compile` (= `deno run -A scripts/compile.ts [TRIPLE...]`).
 *
 * Builds dist/lite-apiserver-<triple> for each Linux target with `deno compile` and the narrowest
 * permissions the program needs (RUNTIME_PERMISSIONS), then writes dist/SHA256SUMS, the layout
 * scripts/install.sh downloads.
 *
 * `deno compile` embeds the `denort` runtime, fetched from dl.deno.land unless DENORT_BIN names
 * a local one. DENORT_BIN is used for the target matching its architecture; DENORT_BIN_X86_64 and
 * DENORT_BIN_AARCH64 name one per target.
 */
import { createHash } from "node:crypto";

/** The release targets and the `uname -m` family each serves. */
export const TARGETS = {
  "x86_64-unknown-linux-gnu": "X86_64",
  "aarch64-unknown-linux-gnu": "AARCH64",
} as const;
export type Target = keyof typeof TARGETS;

/**
 * Environment variables the program may read; reading any other one throws NotCapable. Measured
 * (a bundle run under exactly these permissions, and every env read in the bundled code):
 * - HTTPS_PROXY / NO_PROXY and their lower-case forms: upstream tunnelling (lib/upstream/https_proxy.ts);
 * - LOG_TOKENS, LOG_STREAM: read by npm:yaml on every parse (config and kubeconfig files);
 * - NODE_USE_SYSTEM_CA, NODE_EXTRA_CA_CERTS: read by Deno's node:tls when a connection is made
 *   without an explicit `ca` (the proxy always passes one, but a miss would be a crash, not a log);
 * - KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT: `autonomy` in-cluster, as client-go reads them.
 */
export const RUNTIME_ENV = [
  "HTTPS_PROXY",
  "https_proxy",
  "NO_PROXY",
  "no_proxy",
  "LOG_TOKENS",
  "LOG_STREAM",
  "NODE_USE_SYSTEM_CA",
  "NODE_EXTRA_CA_CERTS",
  "KUBERNETES_SERVICE_HOST",
  "KUBERNETES_SERVICE_PORT",
];

/**
 * Permissions baked into the binary (and used to run the bundle in tests). Why each is as wide
 * as it is:
 * - --allow-net: listens on --address/--port and connects to --kube-apiserver-url, both flags;
 * - --allow-read: certificates, keys, config, tls-config and kubeconfig paths are all flags;
 * - --allow-write: the cache dir is a flag, and `kubeconfig redirect` edits any kubeconfig. The
 *   daemon's writes are confined by systemd instead (ProtectSystem=strict + ReadWritePaths);
 * - --allow-sys=ca: node:tls reads the system root store for a connection made without an explicit
 *   `ca` (same reasoning as NODE_USE_SYSTEM_CA above); nothing else from the host;
 * - no --allow-run, --allow-ffi, --allow-import, and no other environment variables.
 */
export const RUNTIME_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  `--allow-env=${RUNTIME_ENV.join(",")}`,
  "--allow-sys=ca",
];

/** Parses deploy/v8-flags: flags separated by spaces or new lines, `#` comments. */
export function parseV8Flags(text: string): string[] {
  const flags = text.split("\n").map((l) => l.replace(/#.*/, "")).join(" ").split(/\s+/).filter(Boolean);
  const bad = flags.find((f) => !/^--[a-z0-9-_]+(=[^,\s]+)?$/.test(f));
  if (bad !== undefined) {
    throw new Error(`deploy/v8-flags: ${JSON.stringify(bad)} is not a V8 flag (--name[=value])`);
  }
  return flags;
}

/**
 * V8 flags baked into the binary, read from deploy/v8-flags: the one place they are written, also
 * read by every way of running from source (scripts/run-from-source: `deno task serve`, the
 * source-install unit deploy/lite-apiserver-source.service; the test harness and so the demo;
 * `deno task bench`), so that what users run is what is measured.
 * Why each flag: the comments in deploy/v8-flags (measured with bench/ab.ts and `deno task bench`).
 */
export const V8_FLAGS = parseV8Flags(Deno.readTextFileSync(new URL("../deploy/v8-flags", import.meta.url)));

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** Output folder; LITE_APISERVER_DIST moves it (tests build into a temporary one). */
const DIST = Deno.env.get("LITE_APISERVER_DIST") ?? `${ROOT}/dist`;

/** The CPU of an ELF executable ("X86_64", "AARCH64", or null when unknown / not ELF). */
async function elfMachine(path: string): Promise<string | null> {
  try {
    const f = await Deno.open(path);
    try {
      const head = new Uint8Array(20);
      if ((await f.read(head)) !== 20 || head[0] !== 0x7f || head[1] !== 0x45) return null;
      const machine = head[18] | (head[19] << 8);
      return machine === 0x3e ? "X86_64" : machine === 0xb7 ? "AARCH64" : null;
    } finally {
      f.close();
    }
  } catch {
    return null;
  }
}

/** DENORT_BIN for one target: the per-arch variable, else DENORT_BIN if it is that arch's binary. */
async function denortFor(target: Target): Promise<{ path?: string; error?: string }> {
  const arch = TARGETS[target];
  const specific = Deno.env.get(`DENORT_BIN_${arch}`);
  if (specific) return { path: specific };
  const generic = Deno.env.get("DENORT_BIN");
  if (!generic) return {};
  const machine = await elfMachine(generic);
  if (machine === arch) return { path: generic };
  return {
    error: `DENORT_BIN=${generic} is ${machine ?? "not a known ELF"} binary, not ${arch}: ` +
      `set DENORT_BIN_${arch} to the ${target} denort`,
  };
}

/** Turns deno compile's multi-line failure into one line saying what failed and what to do. */
export function explainFailure(target: Target, stderr: string): string {
  // deno prints ANSI colours; strip them before matching.
  // deno-lint-ignore no-control-regex
  const text = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  const url = /error sending request for url \((https:\/\/dl\.deno\.land\/[^)]+)\)/.exec(text);
  const arch = TARGETS[target];
  if (url) {
    // The innermost "N: cause" line before the (unhelpful) stack backtrace says what went wrong.
    const cause = text.split("Stack backtrace")[0].split("\n").map((l) => l.trim())
      .filter((l) => /^\d+: /.test(l)).pop()?.replace(/^\d+: /, "");
    return `${target}: could not download the denort runtime (${url[1]}: ${cause ?? "network error"}); ` +
      `set DENORT_BIN (or DENORT_BIN_${arch}) to a local denort ${Deno.version.deno} for ${target}`;
  }
  const missing = /Could not find denort at '([^']+)'/.exec(text);
  if (missing) return `${target}: DENORT_BIN points at ${missing[1]}, which does not exist`;
  const first = text.split("\n").find((l) => /^error:/.test(l.trim()));
  return `${target}: deno compile failed: ${
    first?.trim().replace(/^error:\s*/, "") ?? "see the output above"
  }`;
}

async function compileOne(target: Target): Promise<string | null> {
  const out = `${DIST}/lite-apiserver-${target}`;
  const denort = await denortFor(target);
  if (denort.error) {
    console.error(`compile: ${target}: ${denort.error}`);
    return null;
  }
  const env: Record<string, string> = {};
  if (denort.path) env.DENORT_BIN = denort.path;
  const args = [
    "compile",
    "--quiet",
    "--target",
    target,
    "--output",
    out,
    ...RUNTIME_PERMISSIONS,
    `--v8-flags=${V8_FLAGS.join(",")}`,
    `${ROOT}/main.ts`,
  ];
  console.log(`compile: ${target} -> ${out}${denort.path ? ` (denort ${denort.path})` : ""}`);
  const res = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env,
    stdout: "inherit",
    stderr: "piped",
  })
    .output();
  if (!res.success) {
    console.error(`compile: ${explainFailure(target, new TextDecoder().decode(res.stderr))}`);
    return null;
  }
  return out;
}

async function smokeTest(bin: string): Promise<boolean> {
  const res = await new Deno.Command(bin, { args: ["--version"], stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(res.stdout).trim();
  if (!res.success || !text.startsWith("lite-apiserver ")) {
    console.error(`compile: ${bin} --version failed: ${text}${new TextDecoder().decode(res.stderr).trim()}`);
    return false;
  }
  console.log(`compile: ${bin} --version: ${text}`);
  return true;
}

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** Builds the given targets (default: all); returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const unknown = args.filter((a) => !(a in TARGETS));
  if (unknown.length > 0) {
    console.error(
      `compile: unknown target ${unknown.join(", ")} (known: ${Object.keys(TARGETS).join(", ")})`,
    );
    return 2;
  }
  const targets = (args.length > 0 ? args : Object.keys(TARGETS)) as Target[];
  await Deno.mkdir(DIST, { recursive: true });
  // A stale SHA256SUMS must not vouch for a partial or failed build.
  await Deno.remove(`${DIST}/SHA256SUMS`).catch(() => {});
  const built: string[] = [];
  let failed = 0;
  for (const t of targets) {
    const bin = await compileOne(t);
    if (bin === null) failed++;
    else built.push(bin);
  }
  const host = `${Deno.build.arch}-unknown-linux-gnu`;
  for (const bin of built) {
    if (bin.endsWith(host) && Deno.build.os === "linux" && !(await smokeTest(bin))) failed++;
  }
  if (failed > 0) {
    console.error(`compile: ${failed} of ${targets.length} target(s) failed; dist/SHA256SUMS not written`);
    return 1;
  }
  const lines = [];
  for (const bin of built) lines.push(`${await sha256(bin)}  ${bin.slice(DIST.length + 1)}`);
  await Deno.writeTextFile(`${DIST}/SHA256SUMS`, lines.join("\n") + "\n");
  console.log(`compile: wrote ${DIST}/SHA256SUMS`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
