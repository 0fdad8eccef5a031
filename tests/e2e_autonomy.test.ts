/**
 * `lite-apiserver autonomy` end to end: the real process, run as an ordinary ServiceAccount bound
 * only to the RBAC in deploy/autonomy.yaml, against the simulated apiserver with its node
 * lifecycle (unreachable taint, taint-manager evictions) scaled to 10 ms per tolerationSecond.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseAutonomyArgs } from "../lib/cli/autonomy.ts";
import { isCovered } from "../lib/autonomy/tolerations.ts";
import {
  type Cluster,
  eventually,
  exitOf,
  freePort,
  type HttpsClient,
  httpsClient,
  kubectl,
  ROOT,
  runLite,
  startCluster,
  writeKubeconfig,
} from "./support/harness.ts";
import { createPki } from "./support/pki.ts";
import { startFakeApiServer } from "./support/apiserver/mod.ts";

const SA = "system:serviceaccount:lite-apiserver:autonomy";
const SA_TOKENS = {
  "autonomy-token": { user: SA, groups: ["system:serviceaccounts", "system:serviceaccounts:lite-apiserver"] },
  "unbound-token": {
    user: "system:serviceaccount:lite-apiserver:nobody",
    groups: ["system:serviceaccounts", "system:serviceaccounts:lite-apiserver"],
  },
};
const SECOND_MS = 10; // one tolerationSecond in the simulation: 300 s → 3 s
const LABEL = "lite-apiserver.io/autonomy";
const UNREACHABLE = "node.kubernetes.io/unreachable";

type Pod = {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { tolerations?: { key?: string; tolerationSeconds?: number; effect?: string }[] };
};

async function ok(r: Promise<{ status: number; body: Record<string, unknown> }>, what: string) {
  const res = await r;
  if (res.status >= 300) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

function createNode(admin: HttpsClient, name: string, labelled: boolean) {
  return ok(
    admin.json("/api/v1/nodes", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name, labels: labelled ? { [LABEL]: "true" } : {} },
      }),
    }),
    `create node ${name}`,
  );
}

function createPod(admin: HttpsClient, name: string, node: string, unreachableSeconds?: number) {
  const spec: Record<string, unknown> = { nodeName: node, containers: [{ name: "c", image: "pause:3.9" }] };
  if (unreachableSeconds !== undefined) {
    spec.tolerations = [{
      key: UNREACHABLE,
      operator: "Exists",
      effect: "NoExecute",
      tolerationSeconds: unreachableSeconds,
    }];
  }
  return ok(
    admin.json("/api/v1/namespaces/default/pods", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name }, spec }),
    }),
    `create pod ${name}`,
  );
}

function pod(cluster: Cluster, name: string): Pod | undefined {
  return cluster.apiserver.get("v1", "Pod", "default", name) as Pod | undefined;
}

function secondsOf(p: Pod | undefined, key: string): number | undefined {
  return p?.spec.tolerations?.find((t) => t.key === key && t.effect === "NoExecute")?.tolerationSeconds;
}

function startController(kubeconfig: string) {
  return runLite([
    "autonomy",
    "--kubeconfig",
    kubeconfig,
    "--admin-port",
    "0",
    "--node-selector",
    `${LABEL}=true`,
  ]);
}

async function metric(adminUrl: string, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** The RBAC verb of a recorded request (what the apiserver authorizes it as). */
function verbOf(r: { method: string; path: string; query: string }): string {
  const q = new URLSearchParams(r.query);
  if (r.method === "PATCH") return "patch";
  if (r.method !== "GET") return r.method.toLowerCase();
  if (q.get("watch") === "1" || q.get("watch") === "true") return "watch";
  return /^\/api\/v1\/(nodes|pods)$/.test(r.path) ? "list" : "get";
}

Deno.test("autonomy: labelled node's pods survive a cut past their toleration, unlabelled ones are evicted", async (t) => {
  await using cluster = await startCluster({
    tokens: SA_TOKENS,
    tolerationSecondMs: SECOND_MS,
    bookmarkIntervalMs: 300,
  });
  const admin = httpsClient(cluster.apiserver.directUrl, await Deno.readTextFile(cluster.pki.caCert), {
    token: "admin-token",
  });
  const adminKc = await writeKubeconfig(
    cluster.dir,
    "admin",
    cluster.apiserver.directUrl,
    cluster.pki.caCert,
    {
      token: "admin-token",
    },
  );
  const saKc = await writeKubeconfig(cluster.dir, "autonomy", cluster.apiserver.url, cluster.pki.caCert, {
    token: "autonomy-token",
  });
  let ctl = startController(saKc);
  try {
    await t.step("before its RBAC exists, the controller exits with one clear line", async () => {
      assertEquals((await ctl.status).code, 2);
      const errLines = ctl.lines.filter((l) => l.startsWith("lite-apiserver:"));
      assertEquals(errLines.length, 1, ctl.lines.join("\n"));
      assert(/forbidden/.test(errLines[0]), errLines[0]);
    });

    await t.step("deploy/autonomy.yaml: server dry run accepted, then applied", async () => {
      const manifest = `${ROOT}/deploy/autonomy.yaml`;
      // As with a real apiserver, namespaced objects of a dry run need their namespace to exist.
      assertEquals((await kubectl("1.33", adminKc, ["create", "namespace", "lite-apiserver"])).code, 0);
      // --validate=false: the simulated apiserver serves no per-group OpenAPI schemas, so kubectl's
      // schema check could not run; the dry run itself (kinds, namespaces, authorization) does.
      const dry = await kubectl("1.33", adminKc, [
        "apply",
        "--dry-run=server",
        "--validate=false",
        "-f",
        manifest,
      ]);
      assertEquals(dry.code, 0, dry.stderr);
      assert(
        /clusterrole.rbac.authorization.k8s.io\/lite-apiserver-autonomy created \(server dry run\)/.test(
          dry.stdout,
        ),
        dry.stdout,
      );
      assert(/deployment.apps\/autonomy created \(server dry run\)/.test(dry.stdout), dry.stdout);
      assertEquals(
        cluster.apiserver.get(
          "rbac.authorization.k8s.io/v1",
          "ClusterRole",
          undefined,
          "lite-apiserver-autonomy",
        ),
        undefined,
      );
      const real = await kubectl("1.33", adminKc, ["apply", "--validate=false", "-f", manifest]);
      assertEquals(real.code, 0, real.stderr);
      // The Deployment runs the binary with arguments its own flag parser accepts.
      const docs = parseAllDocuments(await Deno.readTextFile(manifest)).map((d) => d.toJS());
      const args: string[] = docs.find((d) => d.kind === "Deployment").spec.template.spec.containers[0].args;
      assertEquals(args[0], "autonomy");
      assertEquals(parseAutonomyArgs(args.slice(1))?.nodeSelector, `${LABEL}=true`);
      // A selector the apiserver cannot parse: one line naming the flag.
      const bad = runLite(["autonomy", "--kubeconfig", saKc, "--admin-port", "0", "--node-selector", "a in"]);
      assertEquals((await bad.status).code, 2);
      const errLines = bad.lines.filter((l) => l.startsWith("lite-apiserver:"));
      assertEquals(errLines.length, 1, bad.lines.join("\n"));
      assert(/--node-selector a in: unable to parse requirement/.test(errLines[0]), errLines[0]);
    });

    await createNode(admin, "edge-a", true);
    await createNode(admin, "edge-b", false);
    await createPod(admin, "a1", "edge-a");
    await createPod(admin, "a2", "edge-a", 600);
    await createPod(admin, "b1", "edge-b");
    await createPod(admin, "b2", "edge-b", 900); // evicted at 3x the default: "well past" it
    ctl = startController(saKc);
    const adminLine = await ctl.waitForLine(/autonomy admin listening on (http:\/\/\S+)/);
    const adminUrl = /(http:\/\/\S+)/.exec(adminLine)![1];
    await ctl.waitForLine(/autonomy: running/);

    await t.step("pods on the labelled node are covered moments after they exist", async () => {
      await eventually(
        () => isCovered(pod(cluster, "a1") as never) && isCovered(pod(cluster, "a2") as never),
        "a1, a2 covered",
      );
      assertEquals(secondsOf(pod(cluster, "b1"), UNREACHABLE), 300);
      assertEquals(secondsOf(pod(cluster, "b2"), UNREACHABLE), 900);
      // Counted once the controller has the answer, a moment after the server applied it.
      await eventually(
        async () =>
          await metric(
            adminUrl,
            "lite_apiserver_autonomy_pod_patches_total",
            `{action="cover",result="ok"}`,
          ) === 2,
        "2 successful cover patches counted",
      );
      const patched = cluster.apiserver.requests.filter((r) => r.method === "PATCH" && r.user === SA)
        .map((r) => r.path);
      assertEquals(patched.sort(), [
        "/api/v1/namespaces/default/pods/a1",
        "/api/v1/namespaces/default/pods/a2",
      ]);
    });

    await t.step("a patch racing another writer is re-read and re-planned", async () => {
      cluster.apiserver.setDelay(/\/pods\/a3$/, 800);
      await createPod(admin, "a3", "edge-a");
      await cluster.apiserver.waitForRequest((r) => r.method === "PATCH" && r.path.endsWith("/pods/a3"));
      const cur = pod(cluster, "a3")! as Record<string, unknown> & Pod;
      cur.spec.tolerations!.unshift({ key: "example.com/extra", effect: "NoSchedule" } as never);
      (cur.spec.tolerations![0] as Record<string, unknown>).operator = "Exists";
      cluster.apiserver.update(cur);
      await eventually(() => isCovered(pod(cluster, "a3") as never), "a3 covered after a conflict", 20_000);
      cluster.apiserver.setDelay(undefined);
      assertEquals(pod(cluster, "a3")!.spec.tolerations![0].key, "example.com/extra");
      assert(
        await metric(
          adminUrl,
          "lite_apiserver_autonomy_pod_patches_total",
          `{action="cover",result="conflict"}`,
        ) >= 1,
      );
    });

    await t.step("a pod that vanishes before its patch is counted, not retried", async () => {
      cluster.apiserver.setDelay(/\/pods\/a5$/, 800);
      await createPod(admin, "a5", "edge-a");
      await cluster.apiserver.waitForRequest((r) => r.method === "PATCH" && r.path.endsWith("/pods/a5"));
      cluster.apiserver.remove("v1", "Pod", "default", "a5");
      await eventually(
        async () =>
          await metric(
            adminUrl,
            "lite_apiserver_autonomy_pod_patches_total",
            `{action="cover",result="vanished"}`,
          ) >= 1,
        "the vanished patch counted",
      );
      cluster.apiserver.setDelay(undefined);
    });

    await t.step(
      "cut both nodes: unlabelled pods evicted (even at 3x the default), labelled ones stay",
      async () => {
        cluster.apiserver.cutNode("edge-a");
        cluster.apiserver.cutNode("edge-b");
        await eventually(
          () => cluster.apiserver.evictions.some((e) => e.name === "b2"),
          "b2 (900 s) evicted",
          30_000,
        );
        const ev = cluster.apiserver.evictions.map((e) => e.name).sort();
        assertEquals(ev, ["b1", "b2"]);
        for (const n of ["a1", "a2", "a3"]) assert(pod(cluster, n), `${n} still there`);
        const b2 = cluster.apiserver.evictions.find((e) => e.name === "b2")!;
        assert(b2.afterMs >= 900 * SECOND_MS, `b2 evicted after its toleration (${b2.afterMs} ms)`);
        cluster.apiserver.restoreNode("edge-a");
        cluster.apiserver.restoreNode("edge-b");
        assert(pod(cluster, "a1") && pod(cluster, "a2") && pod(cluster, "a3"));
      },
    );

    await t.step("label removed: the recorded seconds come back; label added again: covered", async () => {
      const off = await kubectl("1.33", adminKc, ["label", "node", "edge-a", `${LABEL}-`]);
      assertEquals(off.code, 0, off.stderr);
      await eventually(
        () =>
          secondsOf(pod(cluster, "a1"), UNREACHABLE) === 300 &&
          secondsOf(pod(cluster, "a2"), UNREACHABLE) === 600 &&
          !pod(cluster, "a1")!.metadata.annotations?.[`${LABEL}-toleration-seconds`],
        "a1 back to 300 s, a2 back to 600 s",
      );
      const on = await kubectl("1.33", adminKc, ["label", "node", "edge-a", `${LABEL}=true`]);
      assertEquals(on.code, 0, on.stderr);
      // Every pod of the node, a3 included: a cover still in flight would land after the next step's
      // restart and look like a needless patch.
      await eventually(
        () => ["a1", "a2", "a3"].every((n) => isCovered(pod(cluster, n) as never)),
        "a1, a2 and a3 covered again",
      );
    });

    await t.step("watch history lost meanwhile (410): relist, and the new pod is covered", async () => {
      const relists = await metric(adminUrl, "lite_apiserver_autonomy_relists_total", `{resource="pods"}`);
      await cluster.apiserver.setFault("refuse");
      await createPod(admin, "a6", "edge-a");
      cluster.apiserver.compact();
      await cluster.apiserver.setFault("none");
      await eventually(() => isCovered(pod(cluster, "a6") as never), "a6 covered after the relist", 30_000);
      assert(await metric(adminUrl, "lite_apiserver_autonomy_relists_total", `{resource="pods"}`) > relists);
    });

    await t.step(
      "a pod created while the controller is down is covered after it restarts; nothing else is patched",
      async () => {
        await ctl.kill();
        await createPod(admin, "a4", "edge-a");
        const from = cluster.apiserver.requests.length;
        ctl = startController(saKc);
        await ctl.waitForLine(/autonomy: running/);
        await eventually(() => isCovered(pod(cluster, "a4") as never), "a4 covered after the restart");
        const patched = cluster.apiserver.requests.slice(from).filter((r) =>
          r.method === "PATCH" && r.user === SA
        ).map((r) => r.path);
        assertEquals(patched, ["/api/v1/namespaces/default/pods/a4"]); // idempotent: covered pods untouched
      },
    );

    await t.step("RBAC: the controller used only what the manifest grants, and never got a 403", async () => {
      const docs = parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/autonomy.yaml`)).map((d) =>
        d.toJS()
      );
      const role = docs.find((d) => d.kind === "ClusterRole");
      const granted = new Set<string>();
      for (const r of role.rules) {
        for (const res of r.resources) for (const v of r.verbs) granted.add(`${res}:${v}`);
      }
      const mine = cluster.apiserver.requests.filter((r) => r.user === SA && r.path.startsWith("/api/v1/"));
      const used = new Set(
        mine.map((r) => `${r.path.split("/").at(r.path.includes("/namespaces/") ? 5 : 3)}:${verbOf(r)}`),
      );
      const bad = mine.filter((r) => r.status === 401 || r.status === 403);
      // The first start, before the manifest was applied, is the only forbidden one.
      assertEquals(bad.filter((r) => r.time > bad[0]?.time).length, 0);
      for (const u of used) assert(granted.has(u), `used ${u} is granted`);
      // Least privilege: every grant is used, except get on nodes (read via list+watch).
      assertEquals([...granted].filter((g) => !used.has(g)), ["nodes:get"]);
    });
  } finally {
    await ctl.kill();
    admin.close();
  }
});

Deno.test("autonomy: bad flags, an unreachable apiserver, no cluster: one clear line each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autonomy-cli-" });
  try {
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const p = runLite(["autonomy", ...args], env);
      const st = await exitOf(p, `lite-apiserver autonomy ${args.join(" ")}`);
      return { code: st.code, lines: p.lines.filter((l) => l.trim() !== "") };
    };
    let r = await run(["--bogus"]);
    assertEquals([r.code, r.lines], [2, [
      `lite-apiserver: autonomy: unknown flag "--bogus" (see lite-apiserver autonomy --help)`,
    ]]);
    r = await run(["--admin-port", "x"]);
    assertEquals(r.code, 2);
    assertEquals(r.lines.length, 1);
    const pki = await createPki();
    const kc = await writeKubeconfig(dir, "gone", `https://127.0.0.1:${freePort()}`, pki.caCert, {
      token: "t",
    });
    r = await run(["--kubeconfig", kc, "--admin-port", "0"]);
    assertEquals(r.code, 2);
    const err = r.lines.filter((l) => l.startsWith("lite-apiserver:"));
    assertEquals(err.length, 1, r.lines.join("\n"));
    assert(/cannot reach kube-apiserver https:\/\/127\.0\.0\.1:\d+/.test(err[0]), err[0]);
    r = await run(["--admin-port", "0"], { KUBERNETES_SERVICE_HOST: "", KUBERNETES_SERVICE_PORT: "" });
    assertEquals(r.code, 2);
    assert(/not running in a cluster/.test(r.lines.at(-1)!), r.lines.join("\n"));
    await Deno.remove(pki.dir, { recursive: true });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autonomy: start-up failures are one stderr line with the reason and the kubeconfig", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autonomy-start-" });
  const pki = await createPki();
  const other = await createPki(); // a CA the apiserver's certificate does not chain to
  const pair = await pki.server("apiserver");
  const apiserver = await startFakeApiServer({
    caCert: pki.caCert,
    caKey: pki.caKey,
    certFile: pair.cert,
    keyFile: pair.key,
    tokens: SA_TOKENS,
  });
  // Accepts connections and never answers (the TLS handshake never completes): a blackhole.
  const hole = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of hole) held.push(c);
  })().catch(() => {});
  // The blackhole case waits out a 1 s timeout; servers that do answer get 30 s, so a loaded machine's
  // slow answer is never mistaken for a timeout.
  const start = async (name: string, server: string, ca: string, token: string, timeout = "30s") => {
    const kc = await writeKubeconfig(dir, name, server, ca, { token });
    const p = runLite(["autonomy", "--kubeconfig", kc, "--admin-port", "0", "--request-timeout", timeout]);
    const st = await exitOf(p, `autonomy against ${name}`);
    // runLite merges stdout and stderr: the one line must be the only output at all.
    const out = p.lines.filter((l) => l.trim() !== "");
    assertEquals(st.code, 2, out.join("\n"));
    assertEquals(out.length, 1, `one line only, got:\n${out.join("\n")}`);
    assert(out[0].includes(`(kubeconfig ${kc})`), out[0]);
    return out[0];
  };
  try {
    const refused = await start("refused", `https://127.0.0.1:${freePort()}`, pki.caCert, "autonomy-token");
    assert(
      /^lite-apiserver: autonomy: cannot reach kube-apiserver https:\/\/127\.0\.0\.1:\d+ .*: connection refused$/
        .test(refused),
      refused,
    );

    const holePort = (hole.addr as Deno.NetAddr).port;
    const timeout = await start(
      "blackhole",
      `https://127.0.0.1:${holePort}`,
      pki.caCert,
      "autonomy-token",
      "1s",
    );
    assert(/cannot reach kube-apiserver .*: timeout: no answer within 1s$/.test(timeout), timeout);

    const wrongCa = await start("wrong-ca", apiserver.url, other.caCert, "autonomy-token");
    assert(
      /cannot reach kube-apiserver .*: TLS: certificate verify failed: .*not signed by the kubeconfig's certificate-authority/
        .test(wrongCa),
      wrongCa,
    );

    const unauthorized = await start("bad-token", apiserver.url, pki.caCert, "no-such-token");
    assert(
      /\(kubeconfig .*\) rejected the credentials \(401 Unauthorized\)$/.test(unauthorized),
      unauthorized,
    );

    const forbidden = await start("unbound", apiserver.url, pki.caCert, "unbound-token");
    assert(/\(kubeconfig .*\): 403 Forbidden: /.test(forbidden), forbidden);
  } finally {
    hole.close();
    await accepting;
    for (const c of held) c.close();
    await apiserver.close();
    await Deno.remove(pki.dir, { recursive: true });
    await Deno.remove(other.dir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});
