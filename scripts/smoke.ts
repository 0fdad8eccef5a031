/**
 * Smoke run of a lite-apiserver program against the simulated apiserver: `--version`, then `serve`,
 * one proxied GET with the kubelet's client certificate, and the same GET answered from the cache once
 * the upstream is cut. Run by the release workflow on the compiled binary, and by tests/release.test.ts
 * on main.ts, so the workflow's step is exercised here too.
 *
 *   deno run -A scripts/smoke.ts [--binary PATH]
 */
import { VERSION } from "../lib/version.ts";
import {
  eventually,
  httpsClient,
  type LiteLauncher,
  startCluster,
  startLite,
} from "../tests/support/harness.ts";

function fail(msg: string): never {
  console.error(`smoke: FAILED: ${msg}`);
  Deno.exit(1);
}

const args = [...Deno.args];
let binary: string | undefined;
while (args.length) {
  const a = args.shift()!;
  if (a === "--binary" && args[0]) binary = args.shift();
  else fail(`unknown argument '${a}' (usage: smoke.ts [--binary PATH])`);
}
const launcher: LiteLauncher | undefined = binary ? { cmd: binary, args: [], entry: false } : undefined;

const version = await new Deno.Command(binary ?? Deno.execPath(), {
  args: binary
    ? ["--version"]
    : ["run", "-A", "--quiet", new URL("../main.ts", import.meta.url).pathname, "--version"],
  stdout: "piped",
  stderr: "piped",
}).output();
const printed = new TextDecoder().decode(version.stdout).trim();
if (!version.success || !printed.includes(VERSION)) {
  fail(`--version printed '${printed}' (exit ${version.code}), expected ${VERSION}`);
}
console.log(`smoke: --version: ${printed}`);

const cluster = await startCluster();
const lite = await startLite(cluster, { launcher });
const client = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
try {
  const online = await client.json("/api/v1/namespaces/default/pods");
  if (online.status !== 200 || !Array.isArray(online.body.items)) {
    fail(`proxied LIST answered ${online.status}: ${JSON.stringify(online.body).slice(0, 200)}`);
  }
  console.log(`smoke: proxied LIST: 200, ${(online.body.items as unknown[]).length} pods`);
  await cluster.apiserver.setFault("refuse");
  const offline = await eventually(
    async () => {
      const r = await client.json("/api/v1/namespaces/default/pods");
      return r.status === 200 ? r : undefined;
    },
    "the same LIST answered 200 from the cache after the upstream was cut",
    60_000,
  );
  if (JSON.stringify(offline.body.items) !== JSON.stringify(online.body.items)) {
    fail("the cached LIST differs from the proxied one");
  }
  console.log("smoke: cached LIST after the cut: 200, same items");
} finally {
  client.close();
  await lite.kill();
  await cluster.close();
  await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
}
console.log("smoke: ok");
