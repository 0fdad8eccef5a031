/**
 * Log volume and disk-full status end to end (issue 18): a peer that repeats a problem on every
 * connection or write costs the log one line per kind per window, the rest summarised; a cache
 * that cannot be written (a full disk) keeps proxying, shows in /status, /metrics and the status
 * command, and /readyz stays ready.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  commandOutput,
  eventually,
  httpsClient,
  ROOT,
  startCluster,
  startLite,
} from "./support/harness.ts";

const STEADY = ["--health-check-failures", "3"];

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

Deno.test("300 connections with an untrusted certificate: one log line, then one summary", async () => {
  const cluster: Cluster = await startCluster();
  const lite = await startLite(cluster, { extra: STEADY });
  try {
    const rogue = await cluster.pki.rogue("intruder");
    const kind = /client certificate did not verify/;
    const start = lite.lines.length;
    const began = performance.now();
    for (let i = 0; i < 300; i++) {
      // A new client is a new connection: each presents the certificate again.
      const c = httpsClient(lite.url, cluster.pki.caPem, { pair: rogue });
      try {
        const r = await c.request("/version");
        assertEquals(r.status, 200, "served as anonymous");
        await r.body?.cancel();
      } finally {
        c.close();
      }
    }
    const ofKind = () => lite.lines.slice(start).filter((l) => kind.test(l));
    const counted = () => ofKind().reduce((n, l) => n + Number(/repeated=(\d+)/.exec(l)?.[1] ?? 1), 0);
    // Every connection ends up in a line or a summary (on a slow machine the 300 span several windows).
    await eventually(() => counted() === 300, "all 300 connections counted in the log", 30_000);
    const windows = Math.ceil((performance.now() - began) / 10_000);
    const lines = ofKind();
    // The first connection's line, then at most one summary per 10 s window of the kind.
    assert(lines.length <= 1 + windows, `${lines.length} lines in ${windows} windows:\n${lines.join("\n")}`);
    const summary = lines.find((l) => / \.\.\. and \d+ more like this in the last \d+ s/.test(l));
    assert(summary, `a summary line:\n${lines.join("\n")}`);
    assertMatch(summary, /cn=intruder/);
  } finally {
    await lite.kill();
    await cluster.close();
  }
});

/** A 1 MiB tmpfs (root: the real ENOSPC), else a directory made read-only (EACCES for non-root). */
async function smallDisk(): Promise<{ dir: string; fill(): Promise<void>; close(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "lite-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ success: false }));
  const cacheDir = `${dir}/cache`;
  await Deno.mkdir(cacheDir);
  return {
    dir: cacheDir,
    async fill() {
      if (!mount.success) return await Deno.chmod(cacheDir, 0o555);
      const f = await Deno.open(`${dir}/filler`, { write: true, create: true });
      const chunk = new Uint8Array(64 * 1024);
      try {
        for (let i = 0; i < 64; i++) await f.write(chunk); // bounded: 4 MiB > the 1 MiB disk
        throw new Error("the 1 MiB tmpfs did not fill");
      } catch (e) {
        if (!/No space left/i.test((e as Error).message)) throw e;
      } finally {
        f.close();
      }
    },
    async close() {
      if (mount.success) await new Deno.Command("umount", { args: ["-l", dir] }).output();
      await Deno.chmod(cacheDir, 0o755).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("a full disk: requests are answered, /status, /metrics and `status` say so, few log lines", async () => {
  const cluster: Cluster = await startCluster();
  const disk = await smallDisk();
  const lite = await startLite(cluster, { cacheDir: disk.dir, backend: "file", extra: STEADY });
  try {
    const admin = lite.adminUrl!;
    const kubelet = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      await disk.fill();
      const started = Date.now();
      for (let i = 0; i < 60; i++) {
        const r = await kubelet.request(`/api/v1/namespaces/default/configmaps?labelSelector=n%3D${i}`);
        assertEquals(r.status, 200, "proxying goes on with the disk full");
        await r.body?.cancel();
      }
      const report = await eventually(async () => {
        const s = JSON.parse((await get(`${admin}/status`)).text);
        return s.queue.failing?.failedOps >= 60 ? s : undefined;
      }, "/status to count 60 failed cache writes");
      assertEquals(report.healthy, false);
      assertMatch(
        report.problems.join("\n"),
        /cache writes failing since \S+: .*requests are still answered/,
      );
      const m = (await get(`${admin}/metrics`)).text;
      assertMatch(m, /^lite_apiserver_cache_write_failing 1$/m);
      assert(Number(/^lite_apiserver_write_queue_failed_total (\d+)$/m.exec(m)?.[1]) >= 60);
      assertMatch(m, /^lite_apiserver_cache_write_failing_since_seconds \d+$/m);
      assertEquals(await get(`${admin}/readyz`), { status: 200, text: "online\n" }, "the proxy works: ready");

      const cli = await commandOutput(Deno.execPath(), {
        args: ["run", "-A", "--quiet", `${ROOT}/main.ts`, "status", "--admin-url", admin],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }, "lite-apiserver status");
      const out = new TextDecoder().decode(cli.stdout);
      assertEquals(cli.code, 1, `unhealthy:\n${out}`);
      assertMatch(out, /Write queue: .* \d+ failed\n {2}FAILING since \S+: /);
      assertMatch(out, /! cache writes failing since/);

      const failed = lite.lines.filter((l) => l.includes("cache write failed"));
      const windows = Math.ceil((Date.now() - started) / 10_000);
      assert(
        failed.length >= 1 && failed.length <= 1 + windows,
        `${failed.length} lines:\n${failed.join("\n")}`,
      );
    } finally {
      kubelet.close();
    }
    // The failures not written are summarised (by the window's timer, or at the latest at shutdown).
    await lite.kill();
    assertMatch(
      lite.lines.join("\n"),
      /cache write failed.* \.\.\. and \d+ more like this in the last \d+ s/,
    );
  } finally {
    await lite.kill();
    await disk.close();
    await cluster.close();
  }
});
