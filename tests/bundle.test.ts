/**
 * The program is self-contained: `deno bundle main.ts` gives one JS file that runs from an empty
 * directory outside the repo, with no deno.json, no remote imports, no npm resolution, an empty
 * DENO_DIR, and only the narrow permissions the release binary gets (scripts/compile.ts). It
 * answers --version and --help, and `serve` proxies a real request to a fake kube-apiserver
 * presenting the client identity from the tls-config.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { RUNTIME_PERMISSIONS } from "../scripts/compile.ts";
import { VERSION } from "../lib/version.ts";
import { createPki } from "./support/pki.ts";
import { startFakeApiServer } from "./support/apiserver/mod.ts";
import { within } from "./support/harness.ts";

const REPO = new URL("..", import.meta.url).pathname;
const ENTRY = `${REPO}main.ts`;
const dec = new TextDecoder();

interface Bundle {
  dir: string;
  js: string;
  denoDir: string;
  cleanup(): Promise<void>;
}

/** Bundles main.ts into a fresh empty temp directory outside the repo. */
async function bundle(): Promise<Bundle> {
  const dir = await Deno.makeTempDir({ prefix: "lite-bundle-" });
  const js = `${dir}/lite-apiserver.js`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "--output", js, ENTRY],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(`deno bundle ${ENTRY} failed:\n${dec.decode(out.stderr)}`);
  }
  const denoDir = `${dir}/empty-deno-dir`;
  await Deno.mkdir(denoDir);
  return { dir, js, denoDir, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

function runArgs(b: Bundle, args: string[]): { args: string[]; cwd: string; env: Record<string, string> } {
  return {
    args: [
      "run",
      "--no-remote",
      "--no-npm",
      "--no-config",
      "--no-lock",
      "--no-prompt",
      ...RUNTIME_PERMISSIONS,
      b.js,
      ...args,
    ],
    cwd: b.dir,
    env: { DENO_DIR: b.denoDir, NO_COLOR: "1" },
  };
}

async function runBundle(
  b: Bundle,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    ...runArgs(b, args),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function oneFile(b: Bundle): Promise<void> {
  const names: string[] = [];
  for await (const e of Deno.readDir(b.dir)) names.push(e.name);
  assert.deepEqual(names.sort(), ["empty-deno-dir", "lite-apiserver.js"]);
  const text = await Deno.readTextFile(b.js);
  assert.ok(!/\b(from|import)\s*\(?\s*["'](npm|jsr|https?):/.test(text), "bundle still imports packages");
  assert.ok(!text.includes(`file://${REPO}`), "bundle refers to the source tree");
}

async function versionAndHelp(b: Bundle): Promise<void> {
  const v = await runBundle(b, ["--version"]);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), `lite-apiserver ${VERSION}`);
  for (
    const args of [["serve", "--help"], ["kubeconfig", "redirect", "--help"], [
      "kubeconfig",
      "restore",
      "--help",
    ]]
  ) {
    const r = await runBundle(b, args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, /--/, args.join(" "));
  }
  // A user error is still one line under the narrow permissions (yaml reads env vars on parse).
  const bad = await runBundle(b, ["serve", "--config", `${b.dir}/missing.yaml`]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^lite-apiserver: --config .*missing\.yaml: cannot read/);
}

async function serveProxies(b: Bundle): Promise<void> {
  const pki = await createPki();
  const upstreamCert = await pki.server("kube-apiserver");
  const fake = await startFakeApiServer({
    caCert: pki.caCert,
    certFile: upstreamCert.cert,
    keyFile: upstreamCert.key,
  });
  const serving = await pki.server("lite-apiserver");
  const node = await pki.client("system:node:edge1", ["system:nodes"]);
  const work = await Deno.makeTempDir({ prefix: "lite-bundle-serve-" });
  let child: Deno.ChildProcess | undefined;
  let stderrDone: Promise<void> = Promise.resolve();
  try {
    await Deno.writeTextFile(
      `${work}/tls-config.json`,
      JSON.stringify([{ cert: node.combined, key: node.combined }]),
    );
    await Deno.writeTextFile(
      `${work}/config.yaml`,
      [
        `kube-apiserver-url: ${fake.url}`,
        `ca-file: ${pki.caCert}`,
        `tls-cert-file: ${serving.cert}`,
        `tls-private-key-file: ${serving.key}`,
        `tls-config-file: ${work}/tls-config.json`,
        "address: 127.0.0.1",
        "port: 0",
        "admin-port: 0",
        "cache-backend: sqlite",
        `cache-dir: ${work}/cache`,
        "backend-timeout: 3s",
        "",
      ].join("\n"),
    );
    child = new Deno.Command(Deno.execPath(), {
      ...runArgs(b, ["serve", "--config", `${work}/config.yaml`]),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();

    // Wait for the start-up line that names the bound port (or for the process to end).
    let log = "";
    const port = Promise.withResolvers<number>();
    stderrDone = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        log += chunk;
        const m = /listen=127\.0\.0\.1:(\d+)/.exec(log);
        if (m) port.resolve(Number(m[1]));
      }
      port.reject(new Error(`serve exited before listening:\n${log}`));
    })();
    const p = await within(port.promise, "the bundle's serve to log its listening port", 60_000);

    const res = await within(
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        https.get({
          host: "127.0.0.1",
          port: p,
          path: "/version",
          headers: { accept: "application/json, */*", "user-agent": "kubelet/v1.32.0 (linux/amd64)" },
          ca: pki.caPem,
          cert: node.certPem,
          key: node.keyPem,
          agent: false,
        }, (r) => {
          let body = "";
          r.setEncoding("utf8");
          r.on("data", (c) => body += c);
          r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
        }).on("error", reject);
      }),
      "the bundle's answer to GET /version",
    );
    assert.equal(res.status, 200, res.body);
    assert.ok(typeof JSON.parse(res.body).gitVersion === "string", res.body);
    const seen = await fake.waitForRequest((r) => r.path === "/version" && r.user === "system:node:edge1");
    assert.equal(seen.authn, "cert");
    assert.equal(seen.certSerial?.toUpperCase().replace(/^0+/, ""), node.serial.replace(/^0+/, ""));

    child.kill("SIGTERM");
    const status = await within(child.status, "the bundle's serve to exit on SIGTERM", 20_000);
    child = undefined;
    await within(stderrDone, "the bundle's stderr to close");
    assert.ok(!/NotCapable|Requires \w+ access/.test(log), `a permission was missing:\n${log}`);
    assert.equal(status.code, 0, log);
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.status;
    }
    await stderrDone.catch(() => {});
    await fake.close();
    await Deno.remove(work, { recursive: true });
    await Deno.remove(pki.dir, { recursive: true });
  }
}

/** `autonomy` (the cloud-side controller) under the same permissions: in-cluster env, fetch, watch. */
async function autonomyRuns(b: Bundle): Promise<void> {
  // In-cluster settings are environment variables: readable, so the miss is the token file.
  const out = await new Deno.Command(Deno.execPath(), {
    ...runArgs(b, ["autonomy", "--admin-port", "0"]),
    env: { ...runArgs(b, []).env, KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: "6443" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = dec.decode(out.stderr);
  assert.equal(out.code, 2, err);
  assert.match(
    err,
    /ServiceAccount token \/var\/run\/secrets\/kubernetes.io\/serviceaccount\/token does not exist/,
  );
  assert.ok(!/NotCapable|Requires \w+ access/.test(err), `a permission was missing:\n${err}`);

  const pki = await createPki();
  const cert = await pki.server("kube-apiserver");
  const fake = await startFakeApiServer({
    caCert: pki.caCert,
    certFile: cert.cert,
    keyFile: cert.key,
    tokens: { "admin-token": { user: "admin", groups: ["system:masters"] } },
  });
  const kc = `${pki.dir}/kubeconfig`;
  await Deno.writeTextFile(
    kc,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${fake.url}", certificate-authority: "${pki.caCert}"}}]\n` +
      `users: [{name: u, user: {token: admin-token}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    ...runArgs(b, ["autonomy", "--kubeconfig", kc, "--admin-port", "0"]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  try {
    const running = Promise.withResolvers<void>();
    const done = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        log += chunk;
        if (/autonomy: running/.test(log)) running.resolve();
      }
      running.reject(new Error(`autonomy exited before running:\n${log}`));
    })();
    await running.promise;
    await fake.waitForRequest((r) => r.path === "/api/v1/pods" && r.query.includes("watch=1"));
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0, log);
    await done;
    assert.ok(!/NotCapable|Requires \w+ access/.test(log), `a permission was missing:\n${log}`);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await fake.close();
    await Deno.remove(pki.dir, { recursive: true });
  }
}

Deno.test("bundle of main.ts runs self-contained with the release permissions", async (t) => {
  const b = await bundle();
  try {
    await t.step("one JS file with no npm:, jsr: or repo imports", () => oneFile(b));
    await t.step("--version, --help of every command, one-line errors", () => versionAndHelp(b));
    await t.step(
      "serve proxies GET /version upstream with the registered client identity",
      () => serveProxies(b),
    );
    await t.step("autonomy reads in-cluster settings, lists and watches", () => autonomyRuns(b));
  } finally {
    await b.cleanup();
  }
});
