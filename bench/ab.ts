/**
 * A/B of the proxied small GET between two lite-apiserver entry points (or one with two sets of V8
 * flags): alternating wrk rounds against an nginx upstream, with the lite process's CPU time per
 * request (less sensitive to a loaded machine than req/s), RSS, and GC pauses when `--trace-gc` is
 * among the flags. Both run with the release V8 flags (deploy/v8-flags); v8flags are added to them.
 * Usage:
 * `deno run -A bench/ab.ts <mainA.ts> <mainB.ts> [rounds] [v8flagsB] [v8flagsA] [--cloud=h1]`
 * The nginx upstream offers h2 (as kube-apiserver does) unless `--cloud=h1`.
 */
import { freePort, SOURCE_LAUNCH_ARGS, startCluster, startLite, TOKENS } from "../tests/support/harness.ts";
import { benchPod } from "./pods.ts";
import { rssOf, startNginxUpstream, wrk } from "./tools.ts";

const H2 = !Deno.args.includes("--cloud=h1");
const [mainA, mainB, roundsArg, flagsB, flagsA] = Deno.args.filter((a) => a !== "--cloud=h1");
const rounds = Number(roundsArg ?? 3);
const TOKEN = Object.keys(TOKENS).find((t) => t === "admin-token")!;
const POD_GET = `/api/v1/namespaces/default/pods/${
  (benchPod("default", 0).metadata as { name: string }).name
}`;
const UNIT_ENV = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "131072",
  MALLOC_TRIM_THRESHOLD_: "131072",
};

function cpuMs(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const cluster = await startCluster();
const upstream = await startNginxUpstream({
  port: freePort(),
  cert: cluster.serving.cert,
  key: cluster.serving.key,
  body: JSON.stringify(benchPod("default", 0)),
  http2: H2,
});
const lites = [];
for (const [name, main, flags] of [["A", mainA, flagsA], ["B", mainB, flagsB]]) {
  const lite = await startLite(cluster, {
    env: UNIT_ENV,
    extra: ["--health-check-interval", "1s", "--health-check-failures", "3"],
    backend: "sqlite",
    upstream: upstream.url,
    launcher: {
      cmd: Deno.execPath(),
      args: [
        ...SOURCE_LAUNCH_ARGS.map((a) => flags && a.startsWith("--v8-flags=") ? `${a},${flags}` : a),
        main,
      ],
      entry: false,
    },
  });
  lites.push({ name, lite, idle: rssOf(lite.child.pid) });
}
const cpuPerReq: Record<string, number[]> = {};
try {
  for (const { lite } of lites) await wrk(lite.url + POD_GET, { connections: 4, seconds: 1, token: TOKEN });
  for (let r = 0; r < rounds; r++) {
    for (const c of [1, 32]) {
      for (const { name, lite } of lites) {
        const cpu0 = cpuMs(lite.child.pid);
        const w = await wrk(lite.url + POD_GET, { connections: c, seconds: 3, token: TOKEN });
        const cpu = cpuMs(lite.child.pid) - cpu0;
        (cpuPerReq[`c=${c} ${name}`] ??= []).push(cpu * 1000 / w.requests);
        console.log(
          `round ${r} c=${c} ${name}: ${w.rps.toFixed(0)} req/s p50 ${w.p50Ms.toFixed(2)} p99 ${
            w.p99Ms.toFixed(1)
          } ms, ${(cpu * 1000 / w.requests).toFixed(0)} µs CPU/req, errors ${w.errors}`,
        );
      }
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  for (const c of [1, 32]) {
    const a = median(cpuPerReq[`c=${c} A`]), b = median(cpuPerReq[`c=${c} B`]);
    console.log(
      `c=${c}: median CPU/req A ${a.toFixed(0)} µs, B ${b.toFixed(0)} µs (B/A ${
        (b / a).toFixed(2)
      }); rounds A ${cpuPerReq[`c=${c} A`].map((x) => x.toFixed(0)).join(" ")}, B ${
        cpuPerReq[`c=${c} B`].map((x) => x.toFixed(0)).join(" ")
      }`,
    );
  }
  for (const { name, lite } of lites) {
    const gcs = lite.lines.filter((l) => /: (Scavenge|Mark-Compact|Mark-Sweep|Minor)/.test(l));
    const pauses = gcs.map((l) => Number(/MB, ([\d.]+)/.exec(l)?.[1] ?? 0));
    if (!gcs.length) continue;
    const big = gcs.filter((_, i) => pauses[i] >= 3);
    console.log(
      `${name}: ${gcs.length} GCs, ${big.length} pauses >= 3 ms, total ${
        pauses.reduce((a, b) => a + b, 0).toFixed(0)
      } ms`,
    );
    for (const l of big.slice(0, 8)) console.log(`  ${l.trim().slice(0, 160)}`);
  }
  for (const { name, lite, idle } of lites) {
    console.log(
      `${name}: RSS idle ${(idle / 1048576).toFixed(1)} MiB, after ${
        (rssOf(lite.child.pid) / 1048576).toFixed(1)
      } MiB`,
    );
  }
} finally {
  for (const { lite } of lites) {
    await lite.kill();
    await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
  }
  await upstream.close();
  await cluster.close();
}
