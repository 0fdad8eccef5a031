/**
 * Observability end to end, with real processes: the admin listener (/healthz, /readyz, /metrics,
 * /status), the `status` command's exit codes, JSON logs, and that no bearer token is ever logged.
 */
import assert from "node:assert/strict";
import {
  type Cluster,
  commandOutput,
  eventually,
  freePort,
  httpsClient,
  ROOT,
  startCluster,
  startLite,
} from "./support/harness.ts";

async function get(url: string): Promise<{ status: number; text: string; type: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") ?? "" };
}

/** Runs `main.ts status <args>` and returns its exit code and output. */
async function statusCmd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await commandOutput(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/main.ts`, "status", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }, `lite-apiserver status ${args.join(" ")}`);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The value of one sample `name{labels...}` in Prometheus text, matching every given label. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[4]);
  }
  return undefined;
}

function sum(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      total += Number(line.split(" ").pop());
    }
  }
  return total;
}

async function withCluster(fn: (cluster: Cluster) => Promise<void>) {
  await using cluster = await startCluster();
  await fn(cluster);
}

Deno.test("admin listener: healthz, readyz online/offline, metrics, status command", async () => {
  await withCluster(async (cluster) => {
    const lite = await startLite(cluster);
    const caPem = await Deno.readTextFile(cluster.pki.caCert);
    const token = httpsClient(lite.url, caPem, { token: "admin-token" });
    const kubelet = httpsClient(lite.url, caPem, { pair: cluster.kubelet });
    try {
      assert.ok(lite.adminUrl, "admin URL logged");
      assert.match(lite.adminUrl!, /^http:\/\/127\.0\.0\.1:\d+$/);
      const admin = lite.adminUrl!;

      // healthz / readyz
      assert.deepEqual(await get(`${admin}/healthz`).then((r) => [r.status, r.text.trim()]), [200, "ok"]);
      // Online once a probe has answered (on a loaded machine the very first one may time out).
      const ready = await eventually(
        async () => {
          const r = await get(`${admin}/readyz`);
          return r.text.trim() === "online" ? r : undefined;
        },
        "readyz online",
      );
      assert.equal(ready.status, 200);
      assert.equal((await get(`${admin}/nope`)).status, 404);

      // A few proxied requests, by token and by client certificate.
      const cmPath = "/api/v1/namespaces/default/configmaps/app-config";
      for (let i = 0; i < 3; i++) assert.equal((await token.json(cmPath)).status, 200);
      assert.equal((await token.json("/api/v1/namespaces/default/configmaps")).status, 200);
      assert.equal((await kubelet.json("/api/v1/nodes/edge-1")).status, 200);

      // Metrics: the families and sensible values. The cache walk is reused for ~5 s, so wait for it.
      const metrics = await eventually(
        async () => {
          const m = await get(`${admin}/metrics`);
          return sample(m.text, "lite_apiserver_cache_entries", { backend: "sqlite" })! >= 3 ? m : undefined;
        },
        "cache entries in /metrics",
        20_000,
        250,
      );
      assert.equal(metrics.status, 200);
      assert.match(metrics.type, /^text\/plain; version=0\.0\.4/);
      const m = metrics.text;
      assert.ok(
        sum(m, "lite_apiserver_requests_total", {
          verb: "get",
          resource: "configmaps",
          code: "200",
          source: "upstream",
        }) >= 3,
        m,
      );
      assert.ok(
        sum(m, "lite_apiserver_requests_total", {
          verb: "list",
          resource: "configmaps",
          source: "upstream",
        }) >= 1,
      );
      assert.ok(sample(m, "lite_apiserver_upstream_response_seconds_count")! >= 5);
      assert.equal(sample(m, "lite_apiserver_online"), 1);
      assert.equal(
        sample(m, "lite_apiserver_upstream_endpoint_healthy", { endpoint: cluster.apiserver.url }),
        1,
      );
      assert.ok(sample(m, "lite_apiserver_cache_bytes", { backend: "sqlite" })! > 100);
      assert.ok(sample(m, "lite_apiserver_cache_items", { backend: "sqlite" })! >= 3);
      assert.ok(sample(m, "lite_apiserver_write_queue_written_total")! >= 3);
      // Every write above has landed: a working queue holds nothing, in ops and in bytes.
      const drained = await eventually(
        async () => {
          const t = (await get(`${admin}/metrics`)).text;
          return sample(t, "lite_apiserver_write_queue_depth") === 0 &&
              sample(t, "lite_apiserver_write_queue_bytes") === 0
            ? t
            : undefined;
        },
        "the write queue drained to 0 ops and 0 bytes",
      );
      assert.ok(
        sample(drained, "lite_apiserver_write_queue_written_total")! >=
          sample(m, "lite_apiserver_cache_entries", {
            backend: "sqlite",
          })!,
        "every cached entry was written through the queue",
      );
      assert.equal(sample(m, "lite_apiserver_write_queue_dropped_total"), 0);
      assert.equal(sample(m, "lite_apiserver_write_queue_failed_total"), 0);
      assert.equal(sample(m, "lite_apiserver_offline_watches_held"), 0);
      const expiry = sample(m, "lite_apiserver_client_cert_expiry_seconds", { cn: "system:node:edge-1" })!;
      assert.ok(expiry > 3600, `cert expiry ${expiry}`);
      const rss = sample(m, "process_resident_memory_bytes")!;
      assert.ok(rss > 10 << 20 && rss < 1 << 30, `rss ${rss}`);
      assert.match(m, /^lite_apiserver_build_info\{version="[^"]+",deno="[^"]+".*\} 1$/m);
      assert.match(m, /^# TYPE lite_apiserver_online_transitions_total counter$/m);
      assert.doesNotMatch(m, /admin-token/);

      // /status and the status command, online.
      const st = JSON.parse((await get(`${admin}/status`)).text);
      assert.equal(st.online, true);
      assert.equal(st.healthy, true);
      const ids = st.cache.identities.map((i: { identity: string }) => i.identity);
      assert.ok(ids.includes("cn~system:node:edge-1"), ids.join(","));
      // Token hashes never appear: every token identity is summed in one row.
      assert.ok(ids.includes("token~*"), ids.join(","));
      assert.doesNotMatch(JSON.stringify(st), /token~[0-9a-f]/);
      const tokenId = "token~\\*";
      const online = await statusCmd(["--admin-url", admin]);
      assert.equal(online.code, 0, online.stdout + online.stderr);
      assert.match(online.stdout, /: ONLINE, up /);
      assert.match(online.stdout, /healthy +https:\/\/127\.0\.0\.1:\d+/);
      assert.match(online.stdout, /cn~system:node:edge-1 +\d+ entries/);
      assert.match(online.stdout, new RegExp(`${tokenId} +\\d+ entries`));
      assert.match(online.stdout, /system:node:edge-1 expires \S+ \(\d+d \d+h\)/);
      assert.match(online.stdout, /Write queue: \d+ queued/);
      const port = new URL(admin).port;
      const json = await statusCmd(["--admin-address", "127.0.0.1", "--admin-port", port, "--json"]);
      assert.equal(json.code, 0, json.stderr);
      assert.equal(JSON.parse(json.stdout).online, true);

      // Offline: readyz says so (still 200: reads are served from the cache).
      await cluster.apiserver.setFault("refuse");
      await eventually(
        async () => (await get(`${admin}/readyz`)).text.trim() === "offline",
        "readyz offline",
      );
      assert.equal((await get(`${admin}/readyz`)).status, 200);
      const cached = await token.request(cmPath);
      assert.equal(cached.status, 200);
      assert.equal(cached.headers.get("x-lite-apiserver-source"), "cache");
      await cached.body?.cancel();
      const off = (await get(`${admin}/metrics`)).text;
      assert.ok(
        sum(off, "lite_apiserver_requests_total", { verb: "get", resource: "configmaps", source: "cache" }) >=
          1,
        off,
      );
      assert.equal(sample(off, "lite_apiserver_online"), 0);
      assert.equal(sample(off, "lite_apiserver_online_transitions_total", { state: "offline" }), 1);
      assert.equal(
        sample(off, "lite_apiserver_upstream_endpoint_healthy", { endpoint: cluster.apiserver.url }),
        0,
      );
      const offline = await statusCmd(["--admin-url", admin]);
      assert.equal(offline.code, 1, offline.stdout + offline.stderr);
      assert.match(offline.stdout, /: OFFLINE \(unhealthy\)/);
      assert.match(offline.stdout, /UNHEALTHY https:\/\/127\.0\.0\.1:\d+/);
      assert.match(offline.stdout, /^! offline:/m);

      // Back online.
      await cluster.apiserver.setFault("none");
      await eventually(
        async () => (await get(`${admin}/readyz`)).text.trim() === "online",
        "readyz online again",
      );
      const back = (await get(`${admin}/metrics`)).text;
      assert.equal(sample(back, "lite_apiserver_online_transitions_total", { state: "online" }), 1);
      assert.equal((await statusCmd(["--admin-url", admin])).code, 0);
    } finally {
      token.close();
      kubelet.close();
      await lite.kill();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  });
});

Deno.test("status command: exit 2 with one clear line when the admin listener is unreachable", async () => {
  const port = freePort();
  const r = await statusCmd(["--admin-port", String(port), "--timeout", "3"]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0],
    new RegExp(
      `^lite-apiserver status: cannot reach the admin listener at http://127\\.0\\.0\\.1:${port}: connection refused`,
    ),
  );
  const bad = await statusCmd(["--bogus"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^lite-apiserver: status: unknown flag "--bogus"/);
});

Deno.test("json logs at debug level: one JSON object per line, never a bearer token; admin disabled by --admin-port 0", async () => {
  await withCluster(async (cluster) => {
    const lite = await startLite(cluster, {
      admin: false,
      extra: ["--log-format", "json", "--log-level", "debug"],
    });
    const caPem = await Deno.readTextFile(cluster.pki.caCert);
    const tokens = ["admin-token", "reader-token", "not-a-known-token-7f3a9c"];
    try {
      assert.equal(lite.adminUrl, undefined);
      for (const t of tokens) {
        const c = httpsClient(lite.url, caPem, { token: t });
        try {
          for (
            const p of [
              "/api/v1/namespaces/default/configmaps/app-config",
              "/api/v1/namespaces/default/pods?limit=5",
              "/version",
            ]
          ) {
            await (await c.request(p)).body?.cancel();
          }
          // A watch that ends by itself: its request line is logged when it ends.
          await (await c.request("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")).text();
        } finally {
          c.close();
        }
      }
      // Request lines are written when answered: wait for those of the plain GETs.
      const requestLines = () => lite.lines.filter((l) => l.includes('"msg":"request"')).length;
      await eventually(() => requestLines() >= 9, "debug request log lines");
      const n = lite.lines.length;
      await lite.kill();
      const lines = lite.lines.filter((l) => l.trim() !== "");
      assert.ok(n > 5, lines.join("\n"));
      let requests = 0;
      for (const line of lines) {
        const o = JSON.parse(line);
        assert.equal(typeof o.time, "string", line);
        assert.ok(["debug", "info", "warn", "error"].includes(o.level), line);
        assert.equal(typeof o.msg, "string", line);
        if (o.msg === "request") requests++;
        for (const t of tokens) assert.ok(!line.includes(t), `token in log line: ${line}`);
        assert.doesNotMatch(line, /Bearer/i);
        assert.doesNotMatch(line, /admin listening/);
      }
      assert.ok(requests >= 9, `debug request lines: ${requests}`);
    } finally {
      await lite.kill();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  });
});

Deno.test("admin port in use: one-line error, exit before serving", async () => {
  await withCluster(async (cluster) => {
    const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (blocker.addr as Deno.NetAddr).port;
    const cacheDir = await Deno.makeTempDir({ prefix: "lite-cache-" });
    try {
      const err = await startLite(cluster, { cacheDir, admin: false, extra: ["--admin-port", String(port)] })
        .then(
          async (
            lite,
          ) => (await lite.kill(), new Error("lite-apiserver started although its admin port was taken")),
          (e: Error) => e,
        );
      assert.match(
        err.message,
        new RegExp(`lite-apiserver: --admin-port ${port}: 127\\.0\\.0\\.1:${port} is already in use`),
      );
      assert.doesNotMatch(err.message, /^\s+at /m);
    } finally {
      blocker.close();
      await Deno.remove(cacheDir, { recursive: true });
    }
  });
});
