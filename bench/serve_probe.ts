/**
 * Starts the simulated cluster, an nginx upstream answering the bench pod, and lite-apiserver
 * (release V8 flags) in front of it, prints `PID <pid> URL <url><path> TOKEN <token>` and waits
 * until killed: for strace/perf/profilers attached by hand.
 * Usage: `deno run -A bench/serve_probe.ts [main.ts]`
 */
import { freePort, SOURCE_LAUNCH_ARGS, startCluster, startLite } from "../tests/support/harness.ts";
import { benchPod } from "./pods.ts";
import { startNginxUpstream } from "./tools.ts";

const main = Deno.args[0];
const cluster = await startCluster();
const upstream = await startNginxUpstream({
  port: freePort(),
  cert: cluster.serving.cert,
  key: cluster.serving.key,
  body: JSON.stringify(benchPod("default", 0)),
});
const lite = await startLite(cluster, {
  env: { MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_TRIM_THRESHOLD_: "131072" },
  backend: "sqlite",
  upstream: upstream.url,
  extra: ["--health-check-interval", "1s", "--health-check-failures", "3"],
  launcher: main
    ? { cmd: Deno.execPath(), args: [...SOURCE_LAUNCH_ARGS, ...Deno.args.slice(1), main], entry: false }
    : undefined,
});
const name = (benchPod("default", 0).metadata as { name: string }).name;
console.log(`PID ${lite.child.pid} URL ${lite.url}/api/v1/namespaces/default/pods/${name} TOKEN admin-token`);
const stop = async () => {
  await lite.kill();
  await upstream.close();
  await cluster.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
await new Promise(() => {});
