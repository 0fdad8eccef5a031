/**
 * scripts/install.sh, run with `sh` against temporary roots: local binary, downloads from a
 * loopback HTTP server (good and bad checksums), idempotence, dry run, uninstall, and
 * `systemd-analyze verify` of the unit it writes.
 */
import assert from "node:assert/strict";

const SCRIPT = new URL("../scripts/install.sh", import.meta.url).pathname;
const RELEASE_ASSETS = new URL("../scripts/release-assets.sh", import.meta.url).pathname;
const BIN = "/usr/local/bin/lite-apiserver";
const CONF = "/etc/lite-apiserver/config.yaml";
const UNIT = "/etc/systemd/system/lite-apiserver.service";
const STATE = "/var/lib/lite-apiserver";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function sh(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const out = await new Deno.Command("sh", {
    args: [SCRIPT, ...args],
    // Downloads never leave loopback: the default (GitHub) location is replaced by a refused port.
    env: {
      LITE_APISERVER_BASE_URL: "",
      LITE_APISERVER_RELEASES_URL: "http://127.0.0.1:9/releases",
      LITE_APISERVER_ARCH: "x86_64",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

function ok(r: Result): Result {
  assert.equal(r.code, 0, `install.sh failed:\n${r.stdout}\n${r.stderr}`);
  return r;
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o7777;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    out.push(e.name);
    if (e.isDirectory) { for (const sub of await listTree(`${dir}/${e.name}`)) out.push(`${e.name}/${sub}`); }
  }
  return out.sort();
}

/** A temp dir holding an empty install root and a fake executable binary. */
async function fixture(): Promise<{ dir: string; root: string; bin: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "lite-install-" });
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  const bin = `${dir}/lite-apiserver-x86_64-unknown-linux-gnu`;
  await Deno.writeTextFile(bin, "#!/bin/sh\necho 'lite-apiserver 9.9.9'\n", { mode: 0o644 });
  return { dir, root, bin, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("install.sh parses (sh -n)", async () => {
  const out = await new Deno.Command("sh", { args: ["-n", SCRIPT], stderr: "piped" }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});

Deno.test("local binary install: files, modes, contents, idempotent, config kept", async () => {
  const f = await fixture();
  try {
    const first = ok(await sh(["--root", f.root, "--binary", f.bin, "--no-start"]));
    assert.match(first.stdout, /binary .* installed/);
    assert.equal(await Deno.readTextFile(f.root + BIN), await Deno.readTextFile(f.bin));
    assert.equal(await mode(f.root + BIN), 0o755);
    assert.equal(await mode(f.root + CONF), 0o644);
    assert.equal(await mode(f.root + UNIT), 0o644);
    assert.equal(await mode(f.root + STATE), 0o700);

    const unit = await Deno.readTextFile(f.root + UNIT);
    for (
      const line of [
        "ExecStart=/usr/local/bin/lite-apiserver serve --config /etc/lite-apiserver/config.yaml",
        "Restart=always",
        "RestartSec=1",
        "Before=kubelet.service",
        "After=network-online.target",
        "WantedBy=multi-user.target",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/lite-apiserver",
        "StateDirectory=lite-apiserver",
        "StateDirectoryMode=0700",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=no",
        "UMask=0077",
      ]
    ) assert.ok(unit.split("\n").includes(line), `unit lacks ${line}`);
    assert.ok(!/^(Requires|BindsTo)=/m.test(unit), "a proxy restart must not take kubelet down");

    const conf = await Deno.readTextFile(f.root + CONF);
    for (
      const key of [
        "kube-apiserver-url: https://KUBE-APISERVER-HOST:6443",
        "ca-file: /etc/kubernetes/pki/ca.crt",
        "tls-config-file: /etc/lite-apiserver/tls-config.json",
        "cache-dir: /var/lib/lite-apiserver",
        "port: 51003",
      ]
    ) assert.ok(conf.includes(`\n${key}\n`), `config lacks ${key}`);

    // Second run: nothing rewritten.
    const mtimes = () =>
      Promise.all([BIN, CONF, UNIT].map(async (p) => (await Deno.stat(f.root + p)).mtime?.getTime()));
    const before = await mtimes();
    const second = ok(await sh(["--root", f.root, "--binary", f.bin, "--no-start"]));
    assert.match(second.stdout, /up to date$/m);
    assert.match(second.stdout, /config .* exists, kept/);
    assert.deepEqual(await mtimes(), before);

    // An edited config survives an upgrade; the binary is replaced.
    await Deno.writeTextFile(f.root + CONF, "kube-apiserver-url: https://10.0.0.1:6443\n");
    await Deno.writeTextFile(f.bin, "#!/bin/sh\necho 'lite-apiserver 9.9.10'\n");
    const third = ok(await sh(["--root", f.root, "--binary", f.bin]));
    assert.match(third.stdout, /binary .* updated/);
    assert.equal(await Deno.readTextFile(f.root + CONF), "kube-apiserver-url: https://10.0.0.1:6443\n");
    assert.equal(await Deno.readTextFile(f.root + BIN), await Deno.readTextFile(f.bin));
    assert.equal(await mode(f.root + BIN), 0o755);
    assert.deepEqual(await listTree(f.root + "/usr/local/bin"), ["lite-apiserver"], "no temp files left");
  } finally {
    await f.cleanup();
  }
});

Deno.test("--kube-apiserver-url fills a new config", async () => {
  const f = await fixture();
  try {
    ok(await sh(["--root", f.root, "--binary", f.bin, "--kube-apiserver-url", "https://10.9.8.7:6443"]));
    assert.match(await Deno.readTextFile(f.root + CONF), /^kube-apiserver-url: https:\/\/10\.9\.8\.7:6443$/m);
  } finally {
    await f.cleanup();
  }
});

Deno.test("--dry-run writes nothing, for install and uninstall", async () => {
  const f = await fixture();
  try {
    const r = ok(await sh(["--root", f.root, "--binary", f.bin, "--dry-run"]));
    assert.match(r.stdout, /\[dry-run\] install -m 0755 .*\/usr\/local\/bin\/lite-apiserver/);
    assert.match(r.stdout, /\[dry-run\] install -m 0644 .*lite-apiserver\.service/);
    assert.deepEqual(await listTree(f.root), []);

    ok(await sh(["--root", f.root, "--binary", f.bin]));
    const tree = await listTree(f.root);
    const u = ok(await sh(["--root", f.root, "--uninstall", "--purge", "--dry-run"]));
    assert.match(u.stdout, /\[dry-run\] rm -f .*lite-apiserver/);
    assert.deepEqual(await listTree(f.root), tree);
  } finally {
    await f.cleanup();
  }
});

Deno.test("--uninstall keeps the cache, --purge removes it, a redirected kubeconfig blocks it", async () => {
  const f = await fixture();
  try {
    ok(await sh(["--root", f.root, "--binary", f.bin]));
    await Deno.writeTextFile(`${f.root}${STATE}/cache.db`, "x");
    await Deno.writeTextFile(`${f.root}/etc/lite-apiserver/tls-config.json`, "[]");

    await Deno.mkdir(`${f.root}/etc/kubernetes`, { recursive: true });
    await Deno.writeTextFile(`${f.root}/etc/kubernetes/kubelet.conf.lite-apiserver.orig`, "x");
    const blocked = await sh(["--root", f.root, "--uninstall"]);
    assert.equal(blocked.code, 1);
    assert.match(
      blocked.stderr,
      /^lite-apiserver install: error: \/etc\/kubernetes\/kubelet\.conf is still redirected.*kubeconfig restore/,
    );
    assert.ok(await exists(f.root + BIN));
    await Deno.remove(`${f.root}/etc/kubernetes`, { recursive: true });

    const u = ok(await sh(["--root", f.root, "--uninstall"]));
    assert.match(u.stdout, /kept the cache/);
    assert.equal(await exists(f.root + BIN), false);
    assert.equal(await exists(f.root + UNIT), false);
    assert.equal(await exists(`${f.root}/etc/lite-apiserver`), false);
    assert.equal(await Deno.readTextFile(`${f.root}${STATE}/cache.db`), "x");

    ok(await sh(["--root", f.root, "--uninstall", "--purge"]));
    assert.equal(await exists(f.root + STATE), false);
  } finally {
    await f.cleanup();
  }
});

Deno.test("download mode: verified checksum installs; bad checksum or 404 installs nothing", async () => {
  const f = await fixture();
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const body = files.get(new URL(req.url).pathname);
    return body ? new Response(body) : new Response("not found", { status: 404 });
  });
  const base = `http://127.0.0.1:${server.addr.port}/releases`;
  try {
    const x86 = new TextEncoder().encode("#!/bin/sh\necho x86\n");
    const arm = new TextEncoder().encode("#!/bin/sh\necho arm\n");
    // The release layout comes from the script the release workflow runs.
    await Deno.mkdir(`${f.dir}/dist`);
    await Deno.writeFile(`${f.dir}/dist/lite-apiserver-x86_64-unknown-linux-gnu`, x86);
    await Deno.writeFile(`${f.dir}/dist/lite-apiserver-aarch64-unknown-linux-gnu`, arm);
    const layout = await new Deno.Command("sh", {
      args: [RELEASE_ASSETS, "--dist", `${f.dir}/dist`, "--out", `${f.dir}/release`],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(layout.success, new TextDecoder().decode(layout.stderr));
    const sums = await Deno.readTextFile(`${f.dir}/release/SHA256SUMS`);
    for (const dir of ["/releases", "/releases/v1.2.3"]) {
      for (const e of Deno.readDirSync(`${f.dir}/release`)) {
        files.set(`${dir}/${e.name}`, await Deno.readFile(`${f.dir}/release/${e.name}`));
      }
    }

    const r = ok(await sh(["--root", f.root], { LITE_APISERVER_BASE_URL: base }));
    assert.match(r.stdout, /checksum verified/);
    assert.deepEqual(await Deno.readFile(f.root + BIN), x86);

    // --version and --base-url; the arch override picks the aarch64 asset.
    const root2 = `${f.dir}/root2`;
    ok(
      await sh(["--root", root2, "--base-url", base, "--version", "v1.2.3"], {
        LITE_APISERVER_ARCH: "arm64",
      }),
    );
    assert.deepEqual(await Deno.readFile(root2 + BIN), arm);

    // Tampered binary: clear error, nothing installed.
    files.set("/releases/v6/lite-apiserver-x86_64-unknown-linux-gnu", new TextEncoder().encode("evil"));
    files.set("/releases/v6/SHA256SUMS", new TextEncoder().encode(sums));
    const root3 = `${f.dir}/root3`;
    const bad = await sh(["--root", root3, "--base-url", base, "--version", "v6"]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /^lite-apiserver install: error: checksum mismatch for lite-apiserver-x86_64-unknown-linux-gnu/,
    );
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    assert.equal(await exists(root3), false);

    const missing = await sh(["--root", root3, "--base-url", base, "--version", "v404"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error: download failed: .*v404\/lite-apiserver-x86_64-unknown-linux-gnu/);
    assert.equal(await exists(root3), false);
  } finally {
    await server.shutdown();
    await f.cleanup();
  }
});

Deno.test("clear one-line errors: unsupported arch, no base URL, bad options", async () => {
  const f = await fixture();
  try {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ["--root", f.root, "--base-url", "http://127.0.0.1:9"],
        { LITE_APISERVER_ARCH: "mips" },
        /unsupported machine architecture 'mips'/,
      ],
      [["--root", f.root], {}, /download failed: http:\/\/127\.0\.0\.1:9\/releases\/latest\/download\//],
      [["--root", f.root, "--bogus"], {}, /unknown option '--bogus'/],
      [["--root", f.root, "--purge"], {}, /--purge only makes sense with --uninstall/],
      [["--root", "relative"], {}, /--root must be an absolute path/],
      [["--root", f.root, "--binary", `${f.dir}/nope`], {}, /--binary .*nope: no such file/],
      [["--root"], {}, /--root needs a value/],
    ];
    for (const [args, env, re] of cases) {
      const r = await sh(args, env);
      assert.equal(r.code, 1, args.join(" "));
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
    assert.deepEqual(await listTree(f.root), []);
    const help = ok(await sh(["--help"]));
    assert.match(help.stdout, /--uninstall/);
  } finally {
    await f.cleanup();
  }
});

/** Finds systemd-analyze, installing the systemd package when it is missing (CI images). */
async function systemdAnalyze(): Promise<string> {
  const find = async () => {
    const r = await new Deno.Command("sh", { args: ["-c", "command -v systemd-analyze"], stdout: "piped" })
      .output();
    return r.success ? new TextDecoder().decode(r.stdout).trim() : "";
  };
  let path = await find();
  if (!path) {
    // A fresh CI machine: the package lists must be fetched once before installing.
    for (const args of [["update"], ["install", "-y", "systemd"]]) {
      await new Deno.Command("apt-get", { args, stdout: "null", stderr: "null" }).output().catch(() => null);
    }
    path = await find();
  }
  if (!path) throw new Error("systemd-analyze is required to verify the unit: apt-get install -y systemd");
  return path;
}

Deno.test("systemd-analyze verify accepts the unit with no warnings", async () => {
  const analyze = await systemdAnalyze();
  const f = await fixture();
  try {
    ok(await sh(["--root", f.root, "--binary", f.bin]));
    // verify resolves everything inside --root: give it the stock units and /bin/kill (ExecReload).
    await Deno.mkdir(`${f.root}/usr/lib/systemd`, { recursive: true });
    await new Deno.Command("cp", { args: ["-r", "/usr/lib/systemd/system", `${f.root}/usr/lib/systemd/`] })
      .output();
    await Deno.mkdir(`${f.root}/bin`);
    await Deno.copyFile("/bin/kill", `${f.root}/bin/kill`);
    await Deno.chmod(`${f.root}/bin/kill`, 0o755);
    const out = await new Deno.Command(analyze, {
      args: ["verify", `--root=${f.root}`, "lite-apiserver.service"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.equal(text.trim(), "", `systemd-analyze verify reported:\n${text}`);

    // And it does catch a broken unit (so the empty output above means something).
    await Deno.remove(f.root + BIN);
    const broken = await new Deno.Command(analyze, {
      args: ["verify", `--root=${f.root}`, "lite-apiserver.service"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.notEqual(broken.code, 0);
  } finally {
    await f.cleanup();
  }
});

Deno.test("systemctl: enable without start until configured, then start/restart; uninstall disables", async () => {
  const f = await fixture();
  try {
    const log = `${f.dir}/systemctl.log`;
    const fake = `${f.dir}/systemctl`;
    await Deno.writeTextFile(fake, `#!/bin/sh\necho "$*" >>'${log}'\n`, { mode: 0o755 });
    await Deno.chmod(fake, 0o755);
    const env = { LITE_APISERVER_SYSTEMCTL: fake };
    const calls = async () => {
      const text = await Deno.readTextFile(log).catch(() => "");
      await Deno.remove(log).catch(() => {});
      return text.trim().split("\n").filter(Boolean);
    };

    // Placeholder upstream: enabled, not started.
    const r1 = ok(await sh(["--root", f.root, "--binary", f.bin], env));
    assert.deepEqual(await calls(), ["daemon-reload", "enable lite-apiserver.service"]);
    assert.match(r1.stdout, /enabled but NOT started: set kube-apiserver-url/);
    assert.equal(await Deno.readTextFile(`${f.root}/etc/lite-apiserver/tls-config.json`), "[]\n");
    assert.equal(await mode(`${f.root}/etc/lite-apiserver/tls-config.json`), 0o600);

    // Upstream set but certificates missing: still not started, and the missing files are named.
    const conf = (await Deno.readTextFile(f.root + CONF)).replace(
      "https://KUBE-APISERVER-HOST:6443",
      "https://10.0.0.1:6443",
    );
    await Deno.writeTextFile(f.root + CONF, conf);
    const r2 = ok(await sh(["--root", f.root, "--binary", f.bin], env));
    assert.deepEqual(await calls(), ["daemon-reload", "enable lite-apiserver.service"]);
    assert.match(
      r2.stdout,
      /NOT started: missing \/etc\/kubernetes\/pki\/ca\.crt \/etc\/lite-apiserver\/pki\//,
    );

    for (
      const p of [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/lite-apiserver/pki/lite-apiserver.crt",
        "/etc/lite-apiserver/pki/lite-apiserver.key",
      ]
    ) {
      await Deno.mkdir(f.root + p.slice(0, p.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(f.root + p, "pem");
    }
    // Nothing changed: plain start (a no-op when running). A new binary: restart.
    ok(await sh(["--root", f.root, "--binary", f.bin], env));
    assert.deepEqual(await calls(), [
      "daemon-reload",
      "enable lite-apiserver.service",
      "start lite-apiserver.service",
    ]);
    await Deno.writeTextFile(f.bin, "#!/bin/sh\necho new\n");
    ok(await sh(["--root", f.root, "--binary", f.bin], env));
    assert.deepEqual(await calls(), [
      "daemon-reload",
      "enable lite-apiserver.service",
      "restart lite-apiserver.service",
    ]);

    ok(await sh(["--root", f.root, "--uninstall"], env));
    assert.deepEqual(await calls(), ["disable --now lite-apiserver.service", "daemon-reload"]);
    // --no-start never calls systemctl.
    ok(await sh(["--root", f.root, "--binary", f.bin, "--no-start"], env));
    assert.deepEqual(await calls(), []);
  } finally {
    await f.cleanup();
  }
});
