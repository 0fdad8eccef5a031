/**
 * The demo (README command one): a simulated cloud kube-apiserver and the real lite-apiserver
 * process, driven with kubectl through the classic edge-autonomy scenario: deploy, read through
 * the proxy, cut the cloud, read again, reboot the proxy while offline, read again, restore,
 * converge; with `lite-apiserver autonomy` in the cloud, the node's pods outlive a cut longer
 * than their toleration time (300 s, scaled to 3 s here). Exits non-zero if any step does not behave.
 */
import { isCovered } from "../lib/autonomy/tolerations.ts";
import { eventually, kubectl, runLite, startCluster, startLite, writeKubeconfig } from "./support/harness.ts";
import { grantPodServiceAccount, POD_SERVICE_ACCOUNT, podRequest } from "./support/pod_client.ts";

const KUBECTL = "1.33";
const bold = (s: string) => Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s;
const step = (n: number, s: string) => console.log(`\n${bold(`== ${n}. ${s}`)}`);
const note = (s: string) => console.log(`   ${s}`);

async function show(kc: string, args: string[], expectOk = true): Promise<string> {
  console.log(`   $ kubectl ${args.join(" ")}`);
  const r = await kubectl(KUBECTL, kc, args);
  const out = (r.stdout + r.stderr).trimEnd();
  console.log(out.split("\n").map((l) => `     ${l}`).join("\n"));
  if (expectOk && r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed`);
  if (!expectOk && r.code === 0) throw new Error(`kubectl ${args.join(" ")} should have failed`);
  return r.stdout;
}

/** In-cluster clients: a pod's read with its ServiceAccount token, as `kubernetes.default.svc`. */
async function podRead(port: number, caFile: string, expectSource: string): Promise<void> {
  const path = "/api/v1/nodes";
  console.log(
    `   $ curl --cacert ca.crt -H "Authorization: Bearer <flannel's token>" https://kubernetes.default.svc${path}`,
  );
  const r = await podRequest({ nodeIp: "127.0.0.1", port, caFile, token: POD_SERVICE_ACCOUNT.token }, path);
  if (r.status !== 200 || r.source !== expectSource) {
    throw new Error(`pod read: HTTP ${r.status} from ${r.source} (${r.stderr || r.body.slice(0, 200)})`);
  }
  const names = (JSON.parse(r.body).items as Array<{ metadata: { name: string } }>).map((i) =>
    i.metadata.name
  );
  note(`HTTP 200 from the ${r.source}, as the pod's own identity: ${names.join(", ")}`);
}

function ms(from: number): string {
  return `${(performance.now() - from).toFixed(0)} ms`;
}

// One tolerationSecond of the simulated node lifecycle lasts 10 ms: the default 300 s is 3 s.
const SECOND_MS = 10;
const cluster = await startCluster({ tolerationSecondMs: SECOND_MS });
const cacheDir = await Deno.makeTempDir({ prefix: "lite-apiserver-demo-cache-" });
let lite = await startLite(cluster, { cacheDir, extra: ["--backend-timeout", "2s"] });
let autonomy: ReturnType<typeof runLite> | undefined;
try {
  console.log(bold("lite-apiserver demo"));
  note(`simulated cloud kube-apiserver: ${cluster.apiserver.url}`);
  note(`lite-apiserver on this "edge node":  ${lite.url} (cache: sqlite in ${cacheDir})`);
  const admin = await writeKubeconfig(cluster.dir, "admin", cluster.apiserver.url, cluster.pki.caCert, {
    token: "admin-token",
  });
  // The cloud side (the admin, the autonomy controller) reaches the apiserver without the edge link.
  const cloud = await writeKubeconfig(cluster.dir, "cloud", cluster.apiserver.directUrl, cluster.pki.caCert, {
    token: "admin-token",
  });
  let node = await writeKubeconfig(cluster.dir, "kubelet", lite.url, cluster.pki.caCert, cluster.kubelet);

  step(1, "Deploy an application in the cloud (as the cluster admin, directly)");
  await show(admin, ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3"]);
  await eventually(
    async () =>
      (await kubectl(KUBECTL, admin, ["get", "pods", "-l", "app=web", "-o", "name"])).stdout.split("\n")
        .filter(Boolean).length === 3,
    "3 web pods",
  );

  step(2, "Read through lite-apiserver with the node's own identity (kubelet's client certificate)");
  await show(node, ["get", "pods", "-o", "wide"]);
  await show(node, ["get", "node", "edge-1"]);
  const rec = cluster.apiserver.requests.findLast((r) => r.path === "/api/v1/namespaces/default/pods")!;
  note(`the cloud saw user "${rec.user}" (authenticated by ${rec.authn}), not a proxy identity`);
  // In-cluster clients: a pod (flannel) reaches the API through the node's lite-apiserver.
  note("a pod with in-cluster config (kube-proxy sends kubernetes.default.svc to this node):");
  grantPodServiceAccount(cluster.apiserver);
  await podRead(lite.port, cluster.pki.caCert, "upstream");

  step(3, "Opt edge-1 into edge autonomy: label it, run `lite-apiserver autonomy` in the cloud");
  await show(cloud, ["label", "node", "edge-1", "lite-apiserver.io/autonomy=true"]);
  await show(cloud, [
    "run",
    "elsewhere",
    "--image=nginx:1.27",
    `--overrides={"spec":{"nodeName":"edge-2"}}`,
  ]);
  note("(a pod on edge-2, which is not opted in, for contrast)");
  autonomy = runLite(["autonomy", "--kubeconfig", cloud, "--admin-port", "0"]);
  await autonomy.waitForLine(/autonomy: running/);
  const listWeb = async () =>
    (await kubectl(KUBECTL, cloud, ["get", "pods", "-l", "app=web", "-o", "name"])).stdout.split("\n").filter(
      Boolean,
    );
  const before = (await listWeb()).sort();
  await eventually(
    () =>
      before.every((n) =>
        isCovered(cluster.apiserver.get("v1", "Pod", "default", n.replace("pod/", "")) as never)
      ),
    "web pods covered",
  );
  await show(cloud, [
    "get",
    "pods",
    "-o",
    "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,TOLERATIONS:.spec.tolerations[*].tolerationSeconds",
  ]);
  note(
    "edge-1's pods now tolerate unreachable / not-ready forever (no tolerationSeconds); edge-2's keep 300 s",
  );

  step(4, "Cut the cloud link (packets vanish: the worst case)");
  await cluster.apiserver.setFault("blackhole");
  // In the cloud the node lifecycle controller notices: both edge nodes stop reporting.
  cluster.apiserver.cutNode("edge-1");
  cluster.apiserver.cutNode("edge-2");
  let t0 = performance.now();
  await show(node, ["get", "pods", "-o", "wide"]);
  note(`answered from the cache ${ms(t0)} after the cut (backend timeout 2s)`);
  await lite.waitForLine(/upstream unreachable: offline/);
  t0 = performance.now();
  await show(node, ["get", "pods", "-l", "app=web"]);
  note(`offline, label selectors are applied to the cached list (${ms(t0)})`);
  await show(node, ["create", "configmap", "offline-write", "--from-literal=a=b"], false);
  note("writes fail at once with an honest 503 Status (no fake success)");

  step(5, "Reboot the proxy while the cloud is still down (kill -9, restart on the same cache)");
  await lite.kill("SIGKILL");
  t0 = performance.now();
  lite = await startLite(cluster, { cacheDir, extra: ["--backend-timeout", "2s"] });
  node = await writeKubeconfig(cluster.dir, "kubelet2", lite.url, cluster.pki.caCert, cluster.kubelet);
  await eventually(async () => (await kubectl(KUBECTL, node, ["get", "pods"])).code === 0, "a cached answer");
  note(`restarted and serving the cache ${ms(t0)} after launch (kubectl's own start-up included)`);
  await show(node, ["get", "pods", "-o", "wide"]);
  // In-cluster clients: the pod still reads, from its own cached answers.
  note("the pod, offline, after the reboot:");
  await podRead(lite.port, cluster.pki.caCert, "cache");

  step(6, "The cut lasts longer than the toleration time (300 s, 3 s here): the cloud's view");
  t0 = performance.now();
  await eventually(
    () => cluster.apiserver.evictions.some((e) => e.name === "elsewhere"),
    "the taint manager to evict edge-2's pod",
    30_000,
  );
  const ev = cluster.apiserver.evictions.find((e) => e.name === "elsewhere")!;
  note(`the taint manager evicted "elsewhere" from edge-2 after ${ev.afterMs} ms (its 300 s, scaled)`);
  await show(cloud, ["get", "nodes"]);
  await show(cloud, ["get", "pods", "-o", "wide"]);
  const during = (await listWeb()).sort();
  if (JSON.stringify(during) !== JSON.stringify(before)) throw new Error("edge-1's web pods were evicted");
  note(`edge-1 is unreachable and tainted, yet its ${before.length} web pods are still bound to it`);

  step(7, "Meanwhile, in the cloud: the deployment is scaled to 5");
  const dep = cluster.apiserver.get("apps/v1", "Deployment", "default", "web")! as {
    spec: { replicas: number };
  };
  dep.spec.replicas = 5;
  cluster.apiserver.update(dep as unknown as Record<string, unknown>);
  note("(the edge node cannot see it yet)");

  step(8, "Restore the cloud link: clients converge on the cloud's truth");
  t0 = performance.now();
  await cluster.apiserver.setFault("none");
  cluster.apiserver.restoreNode("edge-1");
  cluster.apiserver.restoreNode("edge-2");
  await lite.waitForLine(/upstream reachable again/);
  await eventually(
    async () =>
      (await kubectl(KUBECTL, node, ["get", "pods", "-l", "app=web", "-o", "name"])).stdout.split("\n")
        .filter(Boolean).length === 5,
    "5 web pods through the proxy",
    20_000,
  );
  note(`the node sees 5 pods ${ms(t0)} after the link came back`);
  await show(node, ["get", "pods", "-l", "app=web"]);
  const after = (await listWeb()).sort();
  if (!before.every((n) => after.includes(n))) throw new Error("an original web pod is gone");
  note(`the ${before.length} original web pods are the same pods as before the cut: none was evicted`);

  console.log(
    `\n${
      bold("demo complete")
    }: online proxying with the caller's identity, offline reads, offline reboot, no eviction, recovery.`,
  );
} finally {
  await autonomy?.kill();
  await lite.kill();
  await cluster.close();
  await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
}
