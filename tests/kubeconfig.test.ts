/**
 * `lite-apiserver kubeconfig redirect|restore`: real files in a temp dir, real certificates.
 */
import assert from "node:assert/strict";
import { createSecureContext } from "node:tls";
import { ConfigError } from "../lib/config/errors.ts";
import { applyRedirect, planRedirect, restoreKubeconfig } from "../lib/kubeconfig/redirect.ts";
import { unifiedDiff } from "../lib/kubeconfig/diff.ts";
import { loadTlsConfig } from "../lib/certs/mod.ts";
import { type Pki, scopedPki } from "./support/pki.ts";
import { commandOutput } from "./support/harness.ts";

const SERVER = "https://127.0.0.1:51003";

function kubeletConf(user: string): string {
  return `apiVersion: v1
clusters:
- cluster:
    certificate-authority: pki/ca.crt
    server: https://10.0.0.1:6443
  name: kubernetes
- cluster:
    server: https://other.example:6443
  name: other
contexts:
- context:
    cluster: kubernetes
    user: system:node:edge1
  name: system:node:edge1@kubernetes
current-context: system:node:edge1@kubernetes
kind: Config
preferences: {}
users:
- name: system:node:edge1
  user:
${user}`;
}

// Relative paths: resolved from the kubeconfig's directory, as client-go does.
const CERT_FILES = `    client-certificate: pki/kubelet-client-current.pem
    client-key: pki/kubelet-client-current.pem
`;

/** Writes a real kubelet client pair (cert + key in one file) where CERT_FILES points. */
async function kubeletPem(dir: string, pki: Pki, cn = "system:node:edge1"): Promise<string> {
  const pair = await pki.client(cn, ["system:nodes"]);
  await Deno.mkdir(`${dir}/pki`, { recursive: true });
  const path = `${dir}/pki/kubelet-client-current.pem`;
  await Deno.writeTextFile(path, pair.certPem + pair.keyPem, { mode: 0o600 });
  return path;
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lite-kc-" });
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function redirect(kubeconfig: string, tlsConfigFile: string) {
  const plan = await planRedirect({ kubeconfig, tlsConfigFile });
  const done = await applyRedirect(plan);
  return { plan, done };
}

Deno.test("redirect rewrites only the current cluster's server, backs up, registers cert files", async () => {
  await using pki = await scopedPki();
  const dir = await tempDir();
  try {
    const kc = `${dir}/kubelet.conf`;
    const tls = `${dir}/etc/tls-config.json`;
    const pem = await kubeletPem(dir, pki);
    const original = kubeletConf(CERT_FILES);
    await Deno.writeTextFile(kc, original, { mode: 0o640 });
    await Deno.chmod(kc, 0o640);

    const { plan, done } = await redirect(kc, tls);
    assert.equal(plan.originalServer, "https://10.0.0.1:6443");
    assert.equal(plan.ca, `${dir}/pki/ca.crt`);
    assert.ok(done.some((l) => l.includes("backed up")), done.join("\n"));

    const after = await Deno.readTextFile(kc);
    const expected = original.replace(
      "    server: https://10.0.0.1:6443\n",
      `    server: ${SERVER} # lite-apiserver: was https://10.0.0.1:6443\n`,
    );
    assert.equal(after, expected, "only the server line of the current cluster changes");
    assert.ok(after.includes("server: https://other.example:6443"));
    assert.equal(await mode(kc), 0o640, "kubeconfig mode preserved");
    assert.equal(await Deno.readTextFile(`${kc}.lite-apiserver.orig`), original);
    assert.equal(await mode(`${kc}.lite-apiserver.orig`), 0o600);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(tls)), [{ cert: pem, key: pem }]);

    // Second run: nothing to do, nothing rewritten, upstream still known (from the backup).
    const before = { kc: (await Deno.stat(kc)).mtime, tls: (await Deno.stat(tls)).mtime };
    const again = await planRedirect({ kubeconfig: kc, tlsConfigFile: tls });
    assert.equal(again.changes.length, 0);
    assert.equal(again.backup, null);
    assert.equal(again.originalServer, "https://10.0.0.1:6443");
    assert.deepEqual(await applyRedirect(again), []);
    assert.deepEqual({ kc: (await Deno.stat(kc)).mtime, tls: (await Deno.stat(tls)).mtime }, before);

    // Restore: byte for byte, backup gone; a second restore is a clear error.
    await restoreKubeconfig(kc);
    assert.equal(await Deno.readTextFile(kc), original);
    assert.equal(await mode(kc), 0o640);
    assert.equal(await exists(`${kc}.lite-apiserver.orig`), false);
    await assert.rejects(
      () => restoreKubeconfig(kc),
      (e) => e instanceof ConfigError && /no backup/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redirect writes embedded client cert data to a 0600 identity file that TLS can load", async () => {
  await using pki = await scopedPki();
  const dir = await tempDir();
  try {
    const client = await pki.client("system:node:edge1", ["system:nodes"]);
    const b64 = (s: string) => btoa(s);
    const kc = `${dir}/kubelet.conf`;
    await Deno.writeTextFile(
      kc,
      kubeletConf(
        `    client-certificate-data: ${b64(client.certPem)}\n    client-key-data: ${b64(client.keyPem)}\n`,
      ),
    );
    const tls = `${dir}/etc/lite-apiserver/tls-config.json`;
    // An existing tls-config keeps its entries.
    await Deno.mkdir(`${dir}/etc/lite-apiserver`, { recursive: true });
    await Deno.writeTextFile(tls, JSON.stringify([{ cert: "/x.crt", key: "/x.key" }]));

    const { plan } = await redirect(kc, tls);
    const idFile = `${dir}/etc/lite-apiserver/identities/system:node:edge1@kubernetes.pem`;
    assert.deepEqual(JSON.parse(await Deno.readTextFile(tls)), [
      { cert: "/x.crt", key: "/x.key" },
      { cert: idFile, key: idFile },
    ]);
    assert.equal(await mode(idFile), 0o600);
    assert.equal(await mode(`${dir}/etc/lite-apiserver/identities`), 0o700);
    const pem = await Deno.readTextFile(idFile);
    assert.equal(pem, client.certPem + client.keyPem);
    createSecureContext({ cert: pem, key: pem }); // throws if the pair is unusable
    assert.ok(plan.changes.find((c) => c.path === idFile)?.secret);

    // Dry run of an already redirected file: nothing; and the diff of a fresh plan never shows key data.
    const again = await planRedirect({ kubeconfig: kc, tlsConfigFile: tls });
    assert.equal(again.changes.length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dry run prints a diff and writes nothing", async () => {
  await using pki = await scopedPki();
  const dir = await tempDir();
  try {
    const kc = `${dir}/kube-proxy.conf`;
    await kubeletPem(dir, pki);
    await Deno.writeTextFile(kc, kubeletConf(CERT_FILES));
    const tls = `${dir}/tls.json`;
    const res = await runCli([
      "kubeconfig",
      "redirect",
      "--kubeconfig",
      kc,
      "--tls-config-file",
      tls,
      "--dry-run",
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^- {4}server: https:\/\/10\.0\.0\.1:6443$/m);
    assert.match(res.stdout, /^\+ {4}server: https:\/\/127\.0\.0\.1:51003 # lite-apiserver: was/m);
    assert.match(res.stdout, /^\+\+\+ b\/.*tls\.json$/m);
    assert.match(res.stdout, /--kube-apiserver-url\): https:\/\/10\.0\.0\.1:6443/);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["kube-proxy.conf", "pki"]);
    assert.equal(await Deno.readTextFile(kc), kubeletConf(CERT_FILES));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("diff redacts credentials in context lines", () => {
  const before = "a: 1\nclient-key-data: SECRETKEY\ntoken: SECRETTOKEN\nserver: x\n";
  const out = unifiedDiff("/k", before, before.replace("server: x", "server: y"));
  assert.ok(!out.includes("SECRET"), out);
  assert.match(out, /^-server: x$/m);
  assert.match(out, /^\+server: y$/m);
  assert.match(out, /^ client-key-data: <redacted>$/m);
});

Deno.test("token users need no registration; JSON kubeconfigs stay JSON", async () => {
  const dir = await tempDir();
  try {
    const kc = `${dir}/admin.json`;
    const cfg = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "c",
        cluster: { server: "https://10.1.1.1:443", "certificate-authority-data": "QQ==" },
      }],
      contexts: [{ name: "ctx", context: { cluster: "c", user: "u" } }],
      "current-context": "ctx",
      users: [{ name: "u", user: { token: "abc" } }],
    };
    await Deno.writeTextFile(kc, JSON.stringify(cfg));
    const tls = `${dir}/tls.json`;
    const { plan } = await redirect(kc, tls);
    assert.ok(plan.notes.some((n) => /token.*pass/.test(n)), plan.notes.join("\n"));
    assert.equal(await exists(tls), false);
    const after = JSON.parse(await Deno.readTextFile(kc));
    assert.equal(after.clusters[0].cluster.server, SERVER);
    assert.deepEqual({ ...after, clusters: cfg.clusters }, cfg);
    // kubeadm (or an operator) rewrote the server: redirect again, the first backup is kept.
    await Deno.writeTextFile(kc, JSON.stringify(cfg));
    const again = await planRedirect({ kubeconfig: kc, tlsConfigFile: tls });
    assert.equal(again.backup, null);
    assert.equal(again.changes.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clear one-line errors for broken kubeconfigs", async () => {
  const dir = await tempDir();
  try {
    const cases: [string, string | null, RegExp][] = [
      ["missing", null, /does not exist/],
      ["invalid", "a: [\n", /is not valid YAML/],
      ["noctx", "apiVersion: v1\nclusters: []\n", /has no current-context/],
      ["ctx", "current-context: x\ncontexts: []\n", /current context "x" is not defined/],
      [
        "cluster",
        "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
        /cluster "c".*not defined/,
      ],
      [
        "user",
        "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://a'}}]\n",
        /user "u".*not defined/,
      ],
    ];
    for (const [name, text, re] of cases) {
      const path = `${dir}/${name}.conf`;
      if (text !== null) await Deno.writeTextFile(path, text);
      await assert.rejects(
        () => planRedirect({ kubeconfig: path, tlsConfigFile: `${dir}/tls.json` }),
        (e) => e instanceof ConfigError && re.test(e.message) && !e.message.includes("\n"),
        name,
      );
    }
    // Through the CLI: exit code 2, one line on stderr, no stack trace.
    const res = await runCli(["kubeconfig", "redirect", "--kubeconfig", `${dir}/invalid.conf`]);
    assert.equal(res.code, 2);
    assert.equal(res.stderr.trim().split("\n").length, 1, res.stderr);
    assert.match(res.stderr, /^lite-apiserver: .*invalid\.conf is not valid YAML/);
    const restore = await runCli(["kubeconfig", "restore", "--kubeconfig", `${dir}/invalid.conf`]);
    assert.equal(restore.code, 2);
    assert.match(restore.stderr, /no backup/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("help texts", async () => {
  const r = await runCli(["kubeconfig", "redirect", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--dry-run/);
  assert.match(r.stdout, /cluster CA/);
  const s = await runCli(["kubeconfig", "restore", "--help"]);
  assert.equal(s.code, 0);
  assert.match(s.stdout, /byte for byte/);
});

async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const out = await commandOutput(Deno.execPath(), {
    args: ["run", "-A", main, ...args],
    stdout: "piped",
    stderr: "piped",
  }, `lite-apiserver ${args.join(" ")}`);
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("a new pair for a registered CN replaces the old entry; unreadable cert files are refused", async () => {
  await using pki = await scopedPki();
  const dir = await tempDir();
  try {
    const tls = `${dir}/tls.json`;
    const old = await pki.client("system:node:edge1", ["system:nodes"]);
    const other = await pki.client("system:kube-proxy");
    await Deno.writeTextFile(
      tls,
      JSON.stringify([{ cert: old.cert, key: old.key }, { cert: other.cert, key: other.key }]),
    );
    const pem = await kubeletPem(dir, pki, "system:node:edge1");
    const kc = `${dir}/kubelet.conf`;
    await Deno.writeTextFile(kc, kubeletConf(CERT_FILES));
    const { done } = await redirect(kc, tls);
    assert.ok(done.some((l) => l.includes(`replaces ${old.cert}`)), done.join("\n"));
    assert.deepEqual(JSON.parse(await Deno.readTextFile(tls)), [
      { cert: other.cert, key: other.key },
      { cert: pem, key: pem },
    ]);

    // A kubeconfig naming a cert file that is not there: lite-apiserver could not load it, so refuse.
    await restoreKubeconfig(kc);
    await Deno.remove(pem);
    await assert.rejects(
      () => planRedirect({ kubeconfig: kc, tlsConfigFile: tls }),
      (e) => e instanceof ConfigError && /kubelet-client-current\.pem .*does not exist/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redirect reads the tls-config as serve does: entries relative to its folder, empty paths refused", async () => {
  await using pki = await scopedPki();
  const dir = await tempDir();
  try {
    const pem = await kubeletPem(dir, pki);
    const tls = `${dir}/tls.json`;
    // serve resolves a relative entry against the tls-config's own folder: the kubelet's pair is registered.
    const relative = "pki/kubelet-client-current.pem";
    await Deno.writeTextFile(tls, JSON.stringify([{ cert: relative, key: relative }]));
    const kc = `${dir}/kubelet.conf`;
    await Deno.writeTextFile(kc, kubeletConf(CERT_FILES));
    const plan = await planRedirect({ kubeconfig: kc, tlsConfigFile: tls });
    assert.deepEqual(plan.changes.filter((c) => c.path === tls), [], "already registered: nothing to add");
    await applyRedirect(plan);
    const pairs = await loadTlsConfig(tls, pki.caPem);
    assert.deepEqual(pairs.map((p) => [p.cn, p.certFile]), [["system:node:edge1", pem]]);

    await restoreKubeconfig(kc);
    await Deno.writeTextFile(tls, JSON.stringify([{ cert: "", key: "" }]));
    for (
      const attempt of [() => planRedirect({ kubeconfig: kc, tlsConfigFile: tls }), () => loadTlsConfig(tls)]
    ) {
      await assert.rejects(
        attempt,
        (e) =>
          e instanceof ConfigError &&
          /tls\.json entry 1: "cert" must be a non-empty string path/.test(e.message),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
