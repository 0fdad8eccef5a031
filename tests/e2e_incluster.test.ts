/**
 * In-cluster clients, end to end, through the real process: kube-proxy's identity is shown this
 * node's lite-apiserver as the `kubernetes` Service's endpoints (GET, LIST, WATCH, Tables, online and
 * offline) while kubelet and token users see the truth; a pod-style client (ServiceAccount token,
 * the cluster CA, `kubernetes.default.svc` resolved to the node address 127.0.0.2) reads through it
 * as itself, online and offline; the serving certificate's SANs are checked at start.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  eventually,
  httpsClient,
  kubectl,
  type LiteProcess,
  runLite,
  startCluster,
  startLite,
  writeKubeconfig,
} from "./support/harness.ts";
import type { CertPair } from "./support/pki.ts";
import { grantPodServiceAccount, POD_SERVICE_ACCOUNT, podRequest } from "./support/pod_client.ts";

// deno-lint-ignore no-explicit-any
type Any = any;
const NODE_IP = "127.0.0.2";
const SA_TOKEN = POD_SERVICE_ACCOUNT.token;
const SA_USER = POD_SERVICE_ACCOUNT.user;
const SERVICE_SANS = [
  "IP:10.96.0.1",
  "DNS:kubernetes",
  "DNS:kubernetes.default",
  "DNS:kubernetes.default.svc",
  "DNS:kubernetes.default.svc.cluster.local",
];
const SLICES = "/apis/discovery.k8s.io/v1/endpointslices";
const SLICE_SELECTOR = "labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes";
const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/** kubelet's and kube-proxy's pairs both registered, as `kubeconfig redirect` does for each. */
async function addKubeProxy(cluster: Cluster): Promise<CertPair> {
  const kubeProxy = await cluster.pki.client("system:kube-proxy", [], { name: "kube-proxy-client" });
  await Deno.writeTextFile(
    cluster.tlsConfigFile,
    JSON.stringify([
      { cert: cluster.kubelet.combined, key: cluster.kubelet.combined },
      { cert: kubeProxy.combined, key: kubeProxy.combined },
    ]),
  );
  return kubeProxy;
}

async function readEvents(res: Response, until: (evs: Any[]) => boolean, what: string) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: Any[] = [];
  let raw = "";
  let buf = "";
  const timer = setTimeout(() => reader.cancel(`timed out waiting for ${what}`), 20_000);
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`watch ended before ${what}: ${raw}`);
      raw += value;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) events.push(JSON.parse(line));
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  return { events, raw };
}

const epAddrs = (o: Any) => (o.subsets ?? []).flatMap((s: Any) => s.addresses.map((a: Any) => a.ip));
const epPorts = (o: Any) => (o.subsets ?? []).flatMap((s: Any) => s.ports.map((p: Any) => p.port));
const sliceAddrs = (o: Any) => (o.endpoints ?? []).flatMap((e: Any) => e.addresses);
const kubernetesItem = (list: Any) =>
  list.items.find((i: Any) => i.metadata.name === "kubernetes" && i.metadata.namespace === "default");

/** A pod-style client (see support/pod_client.ts) on the node address 127.0.0.2. */
function podCurl(port: number, caFile: string, path: string, token?: string) {
  return podRequest({ nodeIp: NODE_IP, port, caFile, token }, path);
}

Deno.test("in-cluster clients: kube-proxy sees the node address; others the truth; pods read as themselves", async (t) => {
  await using cluster = await startCluster();
  const kubeProxy = await addKubeProxy(cluster);
  grantPodServiceAccount(cluster.apiserver);
  const serving = await cluster.pki.server("lite-incluster", [`IP:${NODE_IP}`, ...SERVICE_SANS]);
  const extra = [
    "--tls-cert-file",
    serving.cert,
    "--tls-private-key-file",
    serving.key,
    "--address",
    "127.0.0.1",
    "--address",
    NODE_IP,
    "--kubernetes-service-endpoint",
    NODE_IP,
    // A loaded machine can miss a probe: only a real cut should take this process offline.
    "--health-check-failures",
    "3",
  ];
  let lite: LiteProcess & { cacheDir: string } = await startLite(cluster, { extra });
  const clients: Array<{ close(): void }> = [];
  const client = (who: Parameters<typeof httpsClient>[2], base = lite.url) => {
    const c = httpsClient(base, cluster.pki.caPem, who);
    clients.push(c);
    return c;
  };
  try {
    const port = lite.port;
    const kp = client({ pair: kubeProxy });
    const kl = client({ pair: cluster.kubelet });
    const reader = client({ token: "reader-token" });
    const kpConfig = await writeKubeconfig(
      cluster.dir,
      "kube-proxy",
      lite.url,
      cluster.pki.caCert,
      kubeProxy,
    );
    const klConfig = await writeKubeconfig(
      cluster.dir,
      "kubelet",
      lite.url,
      cluster.pki.caCert,
      cluster.kubelet,
    );
    let slicesRv = "";
    let endpointsRv = "";

    await t.step("start-up: the endpoint and the serving certificate's SANs are reported", async () => {
      const line = await lite.waitForLine(/is shown the kubernetes Service at/);
      assertMatch(
        line,
        new RegExp(
          `kube-proxy \\(system:kube-proxy\\) is shown the kubernetes Service at ${NODE_IP}:${port}\\b`,
        ),
      );
      assertMatch(
        await lite.waitForLine(/kubernetes Service's SANs/),
        /serving certificate has the kubernetes Service's SANs clusterIp=10\.96\.0\.1/,
      );
      assert(!lite.lines.some((l) => /lacks SANs|no client pair for kube-proxy/.test(l)), "no warning");
    });

    await t.step(
      "online: kube-proxy's GET and LISTs show the node address; kubelet and tokens the truth",
      async () => {
        const get = await kp.json("/api/v1/namespaces/default/endpoints/kubernetes");
        assertEquals([get.status, epAddrs(get.body), epPorts(get.body)], [200, [NODE_IP], [port]]);
        assertEquals((get.body as Any).subsets[0].ports[0].name, "https");
        for (const other of [kl, reader]) {
          const truth = await other.json("/api/v1/namespaces/default/endpoints/kubernetes");
          assertEquals([truth.status, epAddrs(truth.body), epPorts(truth.body)], [200, ["192.168.50.1"], [
            6443,
          ]]);
        }
        const all = await kp.json("/api/v1/endpoints");
        assertEquals(epAddrs(kubernetesItem(all.body)), [NODE_IP]);
        endpointsRv = (all.body as Any).metadata.resourceVersion;
        // kube-proxy prefers protobuf: JSON is negotiated, rewritten all the same.
        const proto = await kp.json(`${SLICES}?${SLICE_SELECTOR}`, {
          headers: { accept: "application/vnd.kubernetes.protobuf, */*" },
        });
        assertEquals(proto.headers.get("content-type"), "application/json");
        assertEquals((proto.body as Any).items.map(sliceAddrs), [[NODE_IP]]);
        assertEquals((proto.body as Any).items[0].ports[0].port, port);
        const allSlices = await kp.json(SLICES);
        assertEquals(sliceAddrs(kubernetesItem(allSlices.body)), [NODE_IP]);
        slicesRv = (allSlices.body as Any).metadata.resourceVersion;
        assertEquals(sliceAddrs(kubernetesItem((await kl.json(SLICES)).body)), ["192.168.50.1"]);
        const ns = await kp.json("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices");
        assertEquals(sliceAddrs(kubernetesItem(ns.body)), [NODE_IP]);
      },
    );

    await t.step("online: kubectl (server-side Tables) shows kube-proxy the node address", async () => {
      const ep = await kubectl("1.33", kpConfig, ["get", "endpoints", "kubernetes", "-n", "default"]);
      assertEquals(ep.code, 0, ep.stderr);
      assertMatch(ep.stdout, new RegExp(`kubernetes\\s+${NODE_IP.replaceAll(".", "\\.")}:${port}\\s`));
      for (const version of ["1.27", "1.33"]) {
        const sl = await kubectl(version, kpConfig, ["get", "endpointslices", "-A"]);
        assertEquals(sl.code, 0, sl.stderr);
        assertMatch(
          sl.stdout,
          new RegExp(`default\\s+kubernetes\\s+IPv4\\s+${port}\\s+${NODE_IP.replaceAll(".", "\\.")}\\s`),
          `kubectl ${version}`,
        );
      }
      const truth = await kubectl("1.33", klConfig, ["get", "endpoints", "kubernetes", "-n", "default"]);
      assertMatch(truth.stdout, /kubernetes\s+192\.168\.50\.1:6443\s/);
    });

    await t.step("online: an upstream change arrives rewritten in kube-proxy's watches", async () => {
      const kpSlices = await kp.request(`${SLICES}?watch=1&resourceVersion=${slicesRv}`);
      const kpEndpoints = await kp.request(`/api/v1/endpoints?watch=1&resourceVersion=${endpointsRv}`);
      const kpTable = await kp.request(
        `/api/v1/namespaces/default/endpoints?watch=1&resourceVersion=${endpointsRv}`,
        { headers: { accept: TABLE } },
      );
      const klSlices = await kl.request(`${SLICES}?watch=1&resourceVersion=${slicesRv}`);
      for (const r of [kpSlices, kpEndpoints, kpTable, klSlices]) assertEquals(r.status, 200);
      // The apiserver moved: its reconciler updates the Endpoints and the EndpointSlice.
      cluster.apiserver.setKubernetesEndpoints({ ips: ["192.168.50.2", "192.168.50.3"], port: 6443 });
      const modified = (evs: Any[]) =>
        evs.some((e) =>
          e.type === "MODIFIED" && (e.object.metadata?.name === "kubernetes" || e.object.kind === "Table")
        );
      const s = await readEvents(kpSlices, modified, "kube-proxy's slice MODIFIED");
      const m = s.events.find((e) => e.type === "MODIFIED")!;
      assertEquals([sliceAddrs(m.object), m.object.ports[0].port], [[NODE_IP], port]);
      assert(!s.raw.includes("192.168.50.2"), "the cloud's new address never reaches kube-proxy");
      const e = await readEvents(kpEndpoints, modified, "kube-proxy's Endpoints MODIFIED");
      assertEquals(epAddrs(e.events.find((x) => x.type === "MODIFIED")!.object), [NODE_IP]);
      const tb = await readEvents(kpTable, modified, "kube-proxy's Table watch MODIFIED");
      assertEquals(
        tb.events.find((x) => x.type === "MODIFIED")!.object.rows[0].cells[1],
        `${NODE_IP}:${port}`,
      );
      const truth = await readEvents(klSlices, modified, "kubelet's slice MODIFIED");
      assertEquals(sliceAddrs(truth.events.find((x) => x.type === "MODIFIED")!.object), [
        "192.168.50.2",
        "192.168.50.3",
      ]);
    });

    await t.step("online: a pod-style client reads through the node address as itself", async () => {
      const from = cluster.apiserver.requests.length;
      const r = await podCurl(port, cluster.pki.caCert, "/api/v1/namespaces/kube-system/pods", SA_TOKEN);
      assertEquals([r.code, r.status], [0, 200], r.stderr);
      assert(JSON.parse(r.body).items.length > 0);
      const seen = await cluster.apiserver.waitForRequest((x) =>
        cluster.apiserver.requests.indexOf(x) >= from && x.path === "/api/v1/namespaces/kube-system/pods"
      );
      assertEquals([seen.user, seen.authn], [SA_USER, "token"]);
      // Its view of the kubernetes Service is the truth: only kube-proxy's is rewritten.
      const ep = await podCurl(
        port,
        cluster.pki.caCert,
        "/api/v1/namespaces/default/endpoints/kubernetes",
        SA_TOKEN,
      );
      assertEquals(epAddrs(JSON.parse(ep.body)), ["192.168.50.2", "192.168.50.3"]);
      // No credentials: forwarded as nobody, never as the node or anyone else.
      const anon = await podCurl(port, cluster.pki.caCert, "/api/v1/namespaces/kube-system/pods");
      assertEquals(anon.status, 403);
      const last = cluster.apiserver.requests.filter((x) => x.path === "/api/v1/namespaces/kube-system/pods")
        .at(-1)!;
      assertEquals([last.user, last.authn], ["system:anonymous", "anonymous"]);
    });

    await t.step(
      "offline: kube-proxy still sees the node address from the cache; others the truth",
      async () => {
        const from = lite.lines.length;
        await cluster.apiserver.setFault("blackhole");
        await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
        const get = await kp.json("/api/v1/namespaces/default/endpoints/kubernetes");
        assertEquals([get.status, get.headers.get("x-lite-apiserver-source")], [200, "cache"]);
        assertEquals([epAddrs(get.body), epPorts(get.body)], [[NODE_IP], [port]]);
        const all = await kp.json("/api/v1/endpoints");
        assertEquals([all.headers.get("x-lite-apiserver-source"), epAddrs(kubernetesItem(all.body))], [
          "cache",
          [NODE_IP],
        ]);
        const sel = await kp.json(`${SLICES}?${SLICE_SELECTOR}`);
        assertEquals([sel.status, (sel.body as Any).items.map(sliceAddrs)], [200, [[NODE_IP]]]);
        // A narrower list never cached as such: derived from the cached all-namespaces list, then rewritten.
        const derived = await kp.json(
          "/api/v1/namespaces/default/endpoints?fieldSelector=metadata.name%3Dkubernetes",
        );
        assertEquals([derived.status, (derived.body as Any).items.map(epAddrs)], [200, [[NODE_IP]]]);
        const ep = await kubectl("1.33", kpConfig, ["get", "endpoints", "kubernetes", "-n", "default"]);
        assertEquals(ep.code, 0, ep.stderr);
        assertMatch(ep.stdout, new RegExp(`kubernetes\\s+${NODE_IP.replaceAll(".", "\\.")}:${port}\\s`));
        // A held watch's initial events are rewritten too.
        const w = await kp.request(`${SLICES}?watch=1&resourceVersion=0`);
        const held = await readEvents(
          w,
          (evs) => evs.some((e) => e.object?.metadata?.name === "kubernetes"),
          "ADDED",
        );
        assertEquals(
          sliceAddrs(held.events.find((e) => e.object.metadata.name === "kubernetes")!.object),
          [NODE_IP],
        );
        // kubelet: the truth, including the change its watch delivered before the cut.
        const truth = await kl.json(`${SLICES}`);
        assertEquals(sliceAddrs(kubernetesItem(truth.body)), ["192.168.50.2", "192.168.50.3"]);
      },
    );

    await t.step(
      "offline: the pod-style client reads its own cached answers, and nobody else's",
      async () => {
        const r = await podCurl(port, cluster.pki.caCert, "/api/v1/namespaces/kube-system/pods", SA_TOKEN);
        assertEquals([r.status, r.source], [200, "cache"], r.body);
        assert(JSON.parse(r.body).items.length > 0);
        // The pod read this path online, the reader token did not: the reader gets no one's data.
        const other = await podCurl(
          port,
          cluster.pki.caCert,
          "/api/v1/namespaces/kube-system/pods",
          "reader-token",
        );
        assertEquals(other.status, 503);
        const anon = await podCurl(port, cluster.pki.caCert, "/api/v1/namespaces/kube-system/pods");
        assertEquals(anon.status, 503);
      },
    );

    await t.step(
      "the cache holds the upstream's truth: with the rewrite off, kube-proxy reads it",
      async () => {
        await lite.kill("SIGKILL");
        lite = await startLite(cluster, {
          cacheDir: lite.cacheDir,
          extra: [...extra, "--kubernetes-service-rewrite", "off"],
        });
        await lite.waitForLine(/upstream unreachable: offline/, 30_000);
        await lite.waitForLine(
          /kubernetes Service is not rewritten reason="--kubernetes-service-rewrite off"/,
        );
        const kp2 = client({ pair: kubeProxy });
        // The all-namespaces list, kept current by kube-proxy's watch before the cut: the cloud's change.
        const all = await eventually(async () => {
          const r = await kp2.json(SLICES);
          return r.status === 200 ? r : undefined;
        }, "kube-proxy's cached slices after the restart");
        assertEquals(sliceAddrs(kubernetesItem(all.body)), ["192.168.50.2", "192.168.50.3"]);
        // The selector's list, read once before the change, is served with the newest cached version
        // of its item (the one the watch delivered): the cloud's truth, never the node address.
        const sel = await kp2.json(`${SLICES}?${SLICE_SELECTOR}`);
        assertEquals((sel.body as Any).items.map(sliceAddrs), [["192.168.50.2", "192.168.50.3"]]);
      },
    );
  } finally {
    for (const c of clients) c.close();
    await lite.kill();
    await cluster.apiserver.setFault("none").catch(() => {});
  }
});

Deno.test("in-cluster clients: SAN warning, defaults and refusals at start", async (t) => {
  await using cluster = await startCluster();
  const kubeProxy = await addKubeProxy(cluster);
  await t.step(
    "a serving certificate without the Service's SANs is named in a warning, again on reload",
    async () => {
      const bare = await cluster.pki.server("lite-no-service-sans");
      const lite = await startLite(cluster, {
        extra: [
          "--tls-cert-file",
          bare.cert,
          "--tls-private-key-file",
          bare.key,
          "--kubernetes-service-endpoint",
          `${NODE_IP}:6443`,
        ],
      });
      try {
        const line = await lite.waitForLine(/lacks SANs|has the kubernetes Service's SANs/);
        assertMatch(line, /WARN/);
        assertMatch(
          line,
          new RegExp(`lacks SANs that in-cluster clients verify: ${SERVICE_SANS.join(", ")};`),
        );
        assertMatch(
          await lite.waitForLine(/is shown the kubernetes Service at/),
          new RegExp(`at ${NODE_IP}:6443 `),
        );
        // A renewed certificate with the SANs is checked again when it is picked up.
        const from = lite.lines.length;
        await Deno.writeTextFile(bare.cert, cluster.serving.certPem);
        await Deno.writeTextFile(bare.key, cluster.serving.keyPem);
        assertMatch(
          await lite.waitForLine(/has the kubernetes Service's SANs/, 30_000, from),
          /clusterIp=10\.96\.0\.1/,
        );
      } finally {
        await lite.kill();
      }
    },
  );

  await t.step(
    "with the SANs, flags for another ClusterIP and cluster domain name what is missing",
    async () => {
      const serving = await cluster.pki.server("lite-sans", SERVICE_SANS);
      const kubeletOnly = `${cluster.dir}/tls-config-kubelet-only.json`;
      await Deno.writeTextFile(
        kubeletOnly,
        JSON.stringify([{ cert: cluster.kubelet.combined, key: cluster.kubelet.combined }]),
      );
      const lite = await startLite(cluster, {
        extra: [
          "--tls-cert-file",
          serving.cert,
          "--tls-private-key-file",
          serving.key,
          "--kubernetes-service-endpoint",
          NODE_IP,
          "--kubernetes-service-ip",
          "10.43.0.1",
          "--cluster-domain",
          "edge.local",
          "--tls-config-file",
          kubeletOnly,
        ],
      });
      try {
        const line = await lite.waitForLine(/lacks SANs|has the kubernetes Service's SANs/);
        assertMatch(
          line,
          /lacks SANs that in-cluster clients verify: IP:10\.43\.0\.1, DNS:kubernetes\.default\.svc\.edge\.local;/,
        );
        // kube-proxy's pair is not configured: the operator is told its requests are not rewritten.
        assertMatch(
          await lite.waitForLine(/no client pair for kube-proxy's identity/),
          /WARN .* identities=system:kube-proxy/,
        );
      } finally {
        await lite.kill();
      }
    },
  );

  await t.step("default with only 127.0.0.1: off, no check, kube-proxy sees the truth", async () => {
    await using lite = await startLite(cluster);
    const kp = httpsClient(lite.url, cluster.pki.caPem, { pair: kubeProxy });
    try {
      assertMatch(
        await lite.waitForLine(/in-cluster clients:/),
        /the kubernetes Service is not rewritten reason="no node address/,
      );
      const get = await kp.json("/api/v1/namespaces/default/endpoints/kubernetes");
      assertEquals(epAddrs(get.body), ["192.168.50.1"]);
      assert(!lite.lines.some((l) => /SANs/.test(l)), "no SAN check when the rewrite is off");
    } finally {
      kp.close();
    }
  });

  await t.step("on with only loopback, or a bad endpoint: one clear line, non-zero exit", async () => {
    for (
      const [flags, re] of [
        [["--kubernetes-service-rewrite", "on"], /--kubernetes-service-rewrite on needs a node address/],
        [
          ["--kubernetes-service-endpoint", "node-1:443"],
          /--kubernetes-service-endpoint: "node-1:443" is not IP/,
        ],
      ] as const
    ) {
      const p = runLite([
        "serve",
        "--kube-apiserver-url",
        cluster.apiserver.url,
        "--ca-file",
        cluster.pki.caCert,
        "--tls-cert-file",
        cluster.serving.cert,
        "--tls-private-key-file",
        cluster.serving.key,
        "--cache-dir",
        `${cluster.dir}/cache-refused`,
        "--admin-port",
        "0",
        ...flags,
      ]);
      const status = await p.status;
      const lines = p.lines.filter((l) => l.trim());
      assert(status.code !== 0, `exit code ${status.code}`);
      assertEquals(lines.length, 1, lines.join("\n"));
      assertMatch(lines[0], re);
    }
  });
});
