/** The command line: every bad input ends with one clear line and a non-zero exit, never a stack trace. */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import { createPki } from "./support/pki.ts";
import { exitOf, ROOT, runLite } from "./support/harness.ts";

async function run(args: string[]) {
  const p = runLite(args);
  const status = await exitOf(p, `lite-apiserver ${args.join(" ")}`);
  return { code: status.code, lines: p.lines.filter((l) => l.trim() !== "") };
}

function assertOneLineError(r: { code: number; lines: string[] }, re: RegExp) {
  assert(r.code !== 0, `exit code ${r.code}`);
  assertEquals(r.lines.length, 1, `one line, got:\n${r.lines.join("\n")}`);
  assertMatch(r.lines[0], re);
  assert(!/^\s+at /m.test(r.lines.join("\n")), "no stack trace");
}

Deno.test("bad flags, files and values give one clear line", async (t) => {
  const pki = await createPki();
  const serving = await pki.server("lite");
  const other = await pki.server("other");
  const kubelet = await pki.client("system:node:edge-1", ["system:nodes"]);
  const base = [
    "serve",
    "--kube-apiserver-url",
    "https://127.0.0.1:6443",
    "--ca-file",
    pki.caCert,
    "--tls-cert-file",
    serving.cert,
    "--tls-private-key-file",
    serving.key,
    "--cache-dir",
    `${pki.dir}/cache`,
    "--admin-port",
    "0",
  ];
  const cases: Array<[string, string[], RegExp]> = [
    ["unknown flag", ["--bogus"], /serve: unknown flag "--bogus" \(see lite-apiserver serve --help\)/],
    ["missing upstream", ["serve", "--ca-file", pki.caCert], /--kube-apiserver-url is required/],
    [
      "missing CA file",
      ["--ca-file", "/nonexistent/ca.crt"],
      /--ca-file \/nonexistent\/ca.crt: no such file/,
    ],
    [
      "unreadable serving key",
      ["--tls-private-key-file", pki.dir],
      /--tls-private-key-file .*not a regular file/,
    ],
    ["key that does not match its cert", ["--tls-private-key-file", other.key], /match/i],
    ["plain-http upstream", ["--kube-apiserver-url", "http://10.0.0.1:6443"], /must use https/],
    ["malformed URL", ["--kube-apiserver-url", "https://"], /not a valid URL|has no host/],
    ["bad duration", ["--backend-timeout", "3x"], /--backend-timeout: "3x" is not a duration/],
    ["bad backend", ["--cache-backend", "redis"], /--cache-backend: "redis" is not a backend/],
    ["bad port", ["--port", "99999"], /--port: 99999 is out of range/],
    ["bad log level", ["--log-level", "loud"], /--log-level: "loud" is not a level/],
    ["SuperEdge memory cache", ["--cache-type", "memory"], /--cache-type memory is not supported/],
    ["unknown command", ["frobnicate"], /unknown command "frobnicate"/],
  ];
  for (const [name, extra, re] of cases) {
    await t.step(name, async () => {
      const args = name === "missing upstream" || name === "unknown command" ? extra : [...base, ...extra];
      assertOneLineError(await run(args), re);
    });
  }

  await t.step("malformed tls-config file", async () => {
    const f = `${pki.dir}/tls-config.json`;
    await Deno.writeTextFile(f, `{"cert": "x"}`);
    assertOneLineError(await run([...base, "--tls-config-file", f]), /tls-config/);
    await Deno.writeTextFile(f, `[{"cert": "${kubelet.cert}", "key": "${other.key}"}]`);
    assertOneLineError(await run([...base, "--tls-config-file", f]), /match/i);
  });

  await t.step("config file: unknown key, and flags override it", async () => {
    const f = `${pki.dir}/config.yaml`;
    await Deno.writeTextFile(f, "kube-apiserver-url: https://127.0.0.1:6443\nfoo: bar\n");
    assertOneLineError(await run(["serve", "--config", f]), /unknown key "foo"/);
    await Deno.writeTextFile(
      f,
      `kubeApiserverUrl: https://127.0.0.1:6443\nca-file: ${pki.caCert}\ntls-cert-file: ${serving.cert}\n` +
        `tls-private-key-file: ${serving.key}\nbackend-timeout: 3x\n`,
    );
    assertOneLineError(await run(["serve", "--config", f]), /--backend-timeout: "3x"/);
    // The flag overrides the file's bad value; the bad port proves the file was read and merged.
    assertOneLineError(
      await run(["serve", "--config", f, "--backend-timeout", "2s", "--port", "70000"]),
      /--port: 70000 is out of range/,
    );
  });

  await t.step("port in use", async () => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = String((l.addr as Deno.NetAddr).port);
      const r = await run([...base, "--port", port, "--health-check-interval", "10s"]);
      assert(r.code !== 0);
      const last = r.lines[r.lines.length - 1];
      assertMatch(last, new RegExp(`127.0.0.1:${port} is already in use`));
      assert(!/^\s+at /m.test(r.lines.join("\n")), "no stack trace");
    } finally {
      l.close();
    }
  });

  await t.step("--help and --version", async () => {
    const help = await run(["serve", "--help"]);
    assertEquals(help.code, 0);
    for (
      const flag of [
        "--kube-apiserver-url",
        "--tls-config-file",
        "--cache-backend",
        "--backend-timeout",
        "--config",
      ]
    ) {
      assert(help.lines.some((l) => l.includes(flag)), `help lists ${flag}`);
    }
    const version = await run(["--version"]);
    assertEquals(version.code, 0);
    assertMatch(version.lines[0], /^lite-apiserver \d+\.\d+\.\d+/);
  });

  await Deno.remove(pki.dir, { recursive: true });
  assert(ROOT.length > 0);
});
