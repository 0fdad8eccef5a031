/** Where `lite-apiserver autonomy` connects: kubeconfig (cert or token) and in-cluster settings. */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { fromKubeconfig, inCluster } from "../lib/autonomy/cluster_config.ts";
import { parseAutonomyArgs } from "../lib/cli/autonomy.ts";
import { createPki } from "./support/pki.ts";
import { writeKubeconfig } from "./support/harness.ts";

Deno.test("kubeconfig: client certificate files, token, token file; exec plugins refused", async () => {
  const pki = await createPki();
  try {
    const pair = await pki.client("autonomy", [], { name: "autonomy" });
    let kc = await writeKubeconfig(pki.dir, "cert", "https://127.0.0.1:6443/", pki.caCert, pair);
    let cfg = await fromKubeconfig(kc);
    assertEquals(cfg.server, "https://127.0.0.1:6443");
    assert(cfg.caPem?.includes("BEGIN CERTIFICATE"));
    assert(cfg.certPem?.includes("BEGIN CERTIFICATE") && cfg.keyPem?.includes("PRIVATE KEY"));
    assertEquals(cfg.token, undefined);

    kc = await writeKubeconfig(pki.dir, "tok", "https://127.0.0.1:6443", pki.caCert, { token: "abc" });
    cfg = await fromKubeconfig(kc);
    assertEquals(await cfg.token!(), "abc");

    await Deno.writeTextFile(`${pki.dir}/tf`, "from-file\n");
    const text = (await Deno.readTextFile(kc)).replace("token: abc", "tokenFile: tf");
    await Deno.writeTextFile(kc, text);
    cfg = await fromKubeconfig(kc);
    assertEquals(await cfg.token!(), "from-file");

    await Deno.writeTextFile(kc, text.replace("tokenFile: tf", "exec:\n      command: aws"));
    await rejects(fromKubeconfig(kc), /exec or auth-provider plugin, which is not supported/);
    await rejects(fromKubeconfig(`${pki.dir}/missing`), /kubeconfig \S+\/missing does not exist/);
  } finally {
    await Deno.remove(pki.dir, { recursive: true });
  }
});

Deno.test("in-cluster: service host/port, the mounted token and CA", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/token`, "sa-token\n");
    await Deno.writeTextFile(`${dir}/ca.crt`, "CA");
    const env = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });
    const cfg = await inCluster(
      env({ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }),
      dir,
    );
    assertEquals([cfg.server, cfg.caPem, await cfg.token!()], ["https://10.96.0.1:443", "CA", "sa-token"]);
    const v6 = await inCluster(
      env({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }),
      dir,
    );
    assertEquals(v6.server, "https://[fd00::1]:443");
    await rejects(inCluster(env({}), dir), /not running in a cluster/);
    await rejects(
      inCluster(env({ KUBERNETES_SERVICE_HOST: "h", KUBERNETES_SERVICE_PORT: "1" }), `${dir}/none`),
      /ServiceAccount token \S+\/none\/token does not exist/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flags: defaults, values, and one-line errors", () => {
  const d = parseAutonomyArgs([])!;
  assertEquals([d.nodeSelector, d.adminAddress, d.adminPort, d.kubeconfig], [
    "lite-apiserver.io/autonomy=true",
    "127.0.0.1",
    51005,
    undefined,
  ]);
  assertEquals(
    parseAutonomyArgs(["--node-selector=edge=yes", "--admin-port", "0"])?.nodeSelector,
    "edge=yes",
  );
  assertEquals(d.requestTimeoutMs, 30_000);
  assertEquals(parseAutonomyArgs(["--request-timeout", "1.5s"])?.requestTimeoutMs, 1500);
  for (
    const bad of [
      ["--admin-port", "70000"],
      ["--log-level", "loud"],
      ["--kubeconfig"],
      ["serve"],
      ["--request-timeout", "soon"],
      ["--request-timeout", "0"],
    ]
  ) {
    let msg = "";
    try {
      parseAutonomyArgs(bad);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/^autonomy: /.test(msg) && !msg.includes("\n"), `${bad.join(" ")}: ${msg}`);
  }
});
