/**
 * kubeconfig redirect as an operator uses it: redirect kubelet's (file-referenced certs) and
 * kube-proxy's (embedded cert data) kubeconfigs, start lite-apiserver with the tls-config that
 * redirect wrote, use both through it with kubectl, then restore the original bytes.
 */
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { exitOf, freePort, kubectl, runLite, startCluster, startLite } from "./support/harness.ts";

const b64 = (s: string) => btoa(s);

Deno.test("kubeconfig redirect: components work through lite-apiserver, restore gives the original back", async () => {
  const cluster = await startCluster();
  const dir = await Deno.makeTempDir({ prefix: "redirect-" });
  const proxyPair = await cluster.pki.client("system:kube-proxy", ["system:node-proxier"], {
    name: "kube-proxy",
  });
  const kubeletConf = `${dir}/kubelet.conf`;
  const proxyConf = `${dir}/kube-proxy.conf`;
  const tlsConfig = `${dir}/tls-config.json`;
  const kubeletText = `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: ${cluster.pki.caCert}
    server: ${cluster.apiserver.url}
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
users:
- name: default-auth
  user:
    client-certificate: ${cluster.kubelet.combined}
    client-key: ${cluster.kubelet.combined}
`;
  const proxyText = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    certificate-authority-data: ${b64(cluster.pki.caPem)}
    server: ${cluster.apiserver.url}
contexts:
- name: kube-proxy
  context: {cluster: c, user: kube-proxy}
current-context: kube-proxy
users:
- name: kube-proxy
  user:
    client-certificate-data: ${b64(proxyPair.certPem)}
    client-key-data: ${b64(proxyPair.keyPem)}
`;
  await Deno.writeTextFile(kubeletConf, kubeletText, { mode: 0o600 });
  await Deno.writeTextFile(proxyConf, proxyText, { mode: 0o600 });
  const port = freePort();
  const server = `https://127.0.0.1:${port}`;
  const redirect = async (file: string) => {
    const p = runLite([
      "kubeconfig",
      "redirect",
      "--kubeconfig",
      file,
      "--server",
      server,
      "--tls-config-file",
      tlsConfig,
    ]);
    const status = await exitOf(p, "kubeconfig redirect");
    assertEquals(status.code, 0, p.lines.join("\n"));
    return p.lines.join("\n");
  };
  let lite: Awaited<ReturnType<typeof startLite>> | undefined;
  try {
    assertMatch(await redirect(kubeletConf), new RegExp(cluster.apiserver.url.replace(/[.]/g, "\\.")));
    await redirect(proxyConf);
    assertMatch(await redirect(kubeletConf), /nothing to change|unchanged|already/i);

    // The node address kube-proxy is shown as the kubernetes Service's endpoint (README "In-cluster clients").
    const nodeAddress = ["--kubernetes-service-endpoint", "127.0.0.2"];
    lite = await startLite(cluster, {
      extra: ["--port", String(port), "--tls-config-file", tlsConfig, ...nodeAddress],
    });
    for (const [conf, user] of [[kubeletConf, "system:node:edge-1"], [proxyConf, "system:kube-proxy"]]) {
      const r = await kubectl("1.30", conf, ["get", "services", "-A", "-o", "name"]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /service\/kubernetes/);
      const rec = cluster.apiserver.requests.findLast((x) => x.path === "/api/v1/services")!;
      assertEquals([rec.user, rec.authn], [user, "cert"]);
    }
    // The redirected kube-proxy is recognised: it is shown this node; kubelet sees the cloud's endpoints.
    for (const [conf, endpoints] of [[proxyConf, `127.0.0.2:${port}`], [kubeletConf, "192.168.50.1:6443"]]) {
      const r = await kubectl("1.30", conf, ["get", "endpoints", "kubernetes", "-n", "default"]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, new RegExp(`kubernetes\\s+${endpoints.replace(/[.]/g, "\\.")}\\s`));
    }

    for (const [file, original] of [[kubeletConf, kubeletText], [proxyConf, proxyText]]) {
      const p = runLite(["kubeconfig", "restore", "--kubeconfig", file]);
      assertEquals((await exitOf(p, "kubeconfig restore")).code, 0, p.lines.join("\n"));
      assertEquals(await Deno.readTextFile(file), original, "the original bytes");
    }
  } finally {
    await lite?.kill();
    await cluster.close();
    await Deno.remove(dir, { recursive: true });
  }
});
