/**
 * lite-apiserver on aarch64, end to end: the arm64 build of the pinned Deno runs main.ts under qemu
 * user-mode emulation (scripts/arm-deno.sh installs qemu, the arm64 C runtime and the arm64 Deno when
 * missing), proxies with the kubelet's identity, caches in SQLite and serves reads offline, also to kubectl.
 * Emulated V8 is slow: deadlines are generous, and every wait is on a condition.
 */
import assert from "node:assert/strict";
import {
  type Cluster,
  type HttpsClient,
  httpsClient,
  kubectl,
  ROOT,
  runLite,
  startCluster,
  writeKubeconfig,
} from "./support/harness.ts";

const ARM_DENO = `${ROOT}/scripts/arm-deno.sh`;
/** Installs (first run: apt-get + npm) and emulated start-ups get minutes, not seconds. */
const INSTALL_TIMEOUT_MS = 300_000;
const START_TIMEOUT_MS = 150_000;
const PATHS = ["/api/v1/namespaces/default/pods", "/api/v1/nodes/edge-1"];

/** Runs the arm64 Deno with `args` under qemu and returns its output; throws with its stderr on failure. */
async function armDeno(args: string[]): Promise<string> {
  const out = await new Deno.Command(ARM_DENO, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(INSTALL_TIMEOUT_MS),
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`scripts/arm-deno.sh ${args.join(" ")} failed (${out.code}):\n${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

/** The names of a list's items, or the name of a single object. */
function names(body: Record<string, unknown>): string[] {
  const meta = (o: unknown) => String((o as { metadata?: { name?: string } }).metadata?.name);
  return Array.isArray(body.items) ? body.items.map(meta).sort() : [meta(body)];
}

/** Pod names from `kubectl get pods -o name`. */
function podNames(stdout: string): string[] {
  return stdout.trim().split("\n").map((l) => l.replace(/^pod\//, "")).sort();
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, Math.round(performance.now() - t0)];
}

Deno.test("lite-apiserver runs as an aarch64 process: proxies, caches in SQLite, serves offline", async () => {
  const timings: Record<string, number> = {};

  // 1. The Deno that will run lite-apiserver really is the arm64 build.
  const [arch, archMs] = await timed(() => armDeno(["eval", "console.log(Deno.build.os, Deno.build.arch)"]));
  assert.equal(arch.trim(), "linux aarch64");
  timings["arm deno eval (incl. any install)"] = archMs;

  let cluster: Cluster | undefined;
  let lite: ReturnType<typeof runLite> | undefined;
  const cacheDir = await Deno.makeTempDir({ prefix: "lite-cache-arm-" });
  let client: HttpsClient | undefined;
  try {
    cluster = await startCluster();
    const c = cluster;
    // startLite's flags, with the arm64 Deno (under qemu) as the launcher.
    const args = [
      "serve",
      "--kube-apiserver-url",
      c.apiserver.url,
      "--ca-file",
      c.pki.caCert,
      "--tls-cert-file",
      c.serving.cert,
      "--tls-private-key-file",
      c.serving.key,
      "--tls-config-file",
      c.tlsConfigFile,
      "--port",
      "0",
      "--admin-port",
      "0",
      "--cache-backend",
      "sqlite",
      "--cache-dir",
      cacheDir,
      // startLite uses 1s and 500ms, but the first TLS handshakes under emulation can take longer, and
      // a probe times out after min(backend timeout, interval): give both 10s. A cut is still noticed
      // at the next probe, a refused connection fails at once.
      "--backend-timeout",
      "10s",
      "--health-check-interval",
      "10s",
      "--health-check-failures",
      "1",
    ];
    const t0 = performance.now();
    const p = lite = runLite(args, {}, {
      cmd: ARM_DENO,
      args: ["run", "-A", "--quiet", "--config", `${ROOT}/deno.json`],
    });
    const line = await p.waitForLine(/listening on https:\/\/\S+:(\d+)/, START_TIMEOUT_MS);
    timings["emulated start-up to listening"] = Math.round(performance.now() - t0);
    const port = Number(/listening on https:\/\/\S+?:(\d+)/.exec(line)![1]);
    const url = `https://127.0.0.1:${port}`;

    // The serving process is qemu running the arm64 Deno (the script execs it, so the pid is the same).
    const exe = await Deno.readLink(`/proc/${p.child.pid}/exe`);
    assert.match(exe, /qemu-aarch64/);
    const cmdline = (await Deno.readTextFile(`/proc/${p.child.pid}/cmdline`)).split("\0");
    assert.ok(
      cmdline.some((a) => a.endsWith("@deno/linux-arm64-glibc/deno")),
      `cmdline: ${cmdline.join(" ")}`,
    );

    // 2. Online: proxied with the kubelet's own identity, and cached.
    const http = client = httpsClient(url, c.pki.caPem, { pair: c.kubelet });
    const online: Record<string, string[]> = {};
    for (const path of PATHS) {
      const [res, ms] = await timed(() => http.json(path));
      assert.equal(res.status, 200, `online GET ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.headers.get("x-lite-apiserver-source"), null);
      online[path] = names(res.body);
      assert.ok(online[path].length > 0, `online GET ${path} returned no items`);
      timings[`online GET ${path}`] = ms;
      const seen = await c.apiserver.waitForRequest((r) =>
        r.method === "GET" && r.path === path && r.status === 200
      );
      assert.equal(seen.user, "system:node:edge-1");
      assert.equal(seen.authn, "cert");
    }
    assert.ok(online[PATHS[1]][0] === "edge-1");

    // kubectl online first, as a user would: its discovery is cached too.
    const kc = await writeKubeconfig(c.dir, "kubelet-arm", url, c.pki.caCert, {
      cert: c.kubelet.cert,
      key: c.kubelet.key,
    });
    const [kOnline, kOnlineMs] = await timed(() => kubectl("1.33", kc, ["get", "pods", "-o", "name"]));
    assert.equal(kOnline.code, 0, kOnline.stderr);
    timings["kubectl get pods (online)"] = kOnlineMs;
    assert.deepEqual(podNames(kOnline.stdout), online[PATHS[0]]);

    // 3. Cut the cloud: lite notices, then serves the same answers from its SQLite cache.
    const from = p.lines.length;
    const tCut = performance.now();
    await c.apiserver.setFault("refuse");
    await p.waitForLine(/offline/, 60_000, from);
    timings["detect offline"] = Math.round(performance.now() - tCut);
    for (const path of PATHS) {
      const [res, ms] = await timed(() => http.json(path));
      assert.equal(res.status, 200, `offline GET ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.headers.get("x-lite-apiserver-source"), "cache");
      assert.deepEqual(names(res.body), online[path]);
      timings[`offline GET ${path}`] = ms;
    }

    // 4. kubectl 1.33 reads pods offline through the arm64 lite-apiserver.
    const [kOffline, kOfflineMs] = await timed(() => kubectl("1.33", kc, ["get", "pods", "-o", "name"]));
    assert.equal(kOffline.code, 0, kOffline.stderr);
    assert.deepEqual(podNames(kOffline.stdout), online[PATHS[0]]);
    timings["kubectl get pods (offline)"] = kOfflineMs;

    console.log(`aarch64 timings (ms): ${JSON.stringify(timings)}`);
  } catch (e) {
    if (lite) console.error(`lite-apiserver (aarch64) output:\n${lite.lines.join("\n")}`);
    throw e;
  } finally {
    // 5. Clean up: the emulated process, the client, the cluster, the cache.
    client?.close();
    if (lite) {
      const status = await lite.kill("SIGTERM");
      if (!status.success && status.signal !== "SIGTERM") console.error(lite.lines.slice(-20).join("\n"));
    }
    await cluster?.close();
    await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
  }
});
