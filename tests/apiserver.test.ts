/**
 * The simulated kube-apiserver (tests/support/apiserver), driven by real kubectl binaries and by
 * HTTP-level requests: authn/authz, discovery, CRUD, selectors, paging, Tables, watches and faults.
 */
import nodeAssert from "node:assert/strict";
import * as net from "node:net";
import { createPki } from "./support/pki.ts";
import { type FakeApiServer, startFakeApiServer } from "./support/apiserver/mod.ts";
import { KUBECTL_DIR, within } from "./support/harness.ts";

const pki = await createPki();
const serving = await pki.server("apiserver");
const nodeCert = await pki.client("system:node:edge-1", ["system:nodes"]);
const adminCert = await pki.client("admin", ["system:masters"]);
const rogueCert = await pki.rogue("admin");
const TOKENS = { "reader-token": { user: "reader" } };
const KUBECTLS = ["1.27", "1.33"].map((v) => `${KUBECTL_DIR}/kubectl.${v}`);

type Obj = Record<string, unknown>;

const assert = (v: unknown, msg?: string) => nodeAssert.ok(v, msg);
const assertEquals = (a: unknown, b: unknown, msg?: string) => nodeAssert.deepStrictEqual(a, b, msg);
const assertMatch = (s: string, re: RegExp) => nodeAssert.match(s, re);
const assertRejects = (fn: () => Promise<unknown>) => nodeAssert.rejects(fn);
const assertStringIncludes = (s: string, sub: string) =>
  nodeAssert.ok(s.includes(sub), `expected ${JSON.stringify(s)} to include ${JSON.stringify(sub)}`);
// deno-lint-ignore no-explicit-any
type Any = any;

function start(extra: { bookmarkIntervalMs?: number } = {}): Promise<FakeApiServer> {
  return startFakeApiServer({
    caCert: pki.caCert,
    caKey: pki.caKey,
    certFile: serving.cert,
    keyFile: serving.key,
    tokens: TOKENS,
    ...extra,
  });
}

async function kubeconfig(api: FakeApiServer, user: { cert?: string; key?: string; token?: string }) {
  const dir = await Deno.makeTempDir({ prefix: "fake-apiserver-kc-" });
  const u = user.token
    ? `token: ${user.token}`
    : `client-certificate: ${user.cert}\n    client-key: ${user.key}`;
  const text = `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${api.url}
    certificate-authority: ${pki.caCert}
users:
- name: u
  user:
    ${u}
contexts:
- name: fake
  context: {cluster: fake, user: u}
current-context: fake
`;
  const path = `${dir}/config`;
  await Deno.writeTextFile(path, text);
  return path;
}

async function kubectl(bin: string, kc: string, ...args: string[]) {
  const out = await new Deno.Command(bin, {
    args: ["--kubeconfig", kc, "--cache-dir", `${kc}.cache`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function client(cert?: { certPem: string; keyPem: string }): Deno.HttpClient {
  return Deno.createHttpClient({
    caCerts: [pki.caPem],
    ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
  });
}

async function getJson(c: Deno.HttpClient, url: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, client: c });
  const text = await res.text();
  let body: Any = text;
  try {
    body = JSON.parse(text);
  } catch { /* plain text */ }
  return { status: res.status, body, type: res.headers.get("content-type") ?? "" };
}

/** Reads a watch stream line by line until `until` says stop; returns the events seen. */
async function readWatch(
  c: Deno.HttpClient,
  url: string,
  until: (events: Any[]) => boolean,
  onOpen?: () => void,
): Promise<Any[]> {
  const res = await fetch(url, { client: c });
  assertEquals(res.status, 200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: Any[] = [];
  let buf = "";
  onOpen?.();
  const deadline = Date.now() + 15_000;
  try {
    while (!until(events)) {
      const { value, done } = await within(reader.read(), `watch events from ${url}`, deadline - Date.now());
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        events.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return events;
}

Deno.test("kubectl 1.27 and 1.33 read as a node: pods, selectors, CRD, api-resources", async () => {
  const api = await start();
  try {
    const kc = await kubeconfig(api, nodeCert);
    for (const bin of KUBECTLS) {
      let r = await kubectl(bin, kc, "get", "pods", "-A");
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /^NAMESPACE\s+NAME\s+READY\s+STATUS/);
      assertMatch(r.stdout, /kube-system\s+kube-proxy-edge-1\s+1\/1\s+Running/);
      assertStringIncludes(r.stdout, "nginx-2");

      r = await kubectl(bin, kc, "get", "pods", "-l", "app=nginx", "-o", "name");
      assertEquals(r.stdout.trim().split("\n"), ["pod/nginx-1", "pod/nginx-2"]);

      r = await kubectl(
        bin,
        kc,
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=edge-2",
        "-o",
        "name",
      );
      assertEquals(r.stdout.trim(), "pod/nginx-2");

      r = await kubectl(bin, kc, "get", "pods", "--field-selector", "spec.bogus=1");
      assert(r.code !== 0);
      assertStringIncludes(r.stderr, "field label not supported: spec.bogus");

      r = await kubectl(bin, kc, "get", "widgets");
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /NAME\s+CREATED AT\nw1\s+\d{4}-/);

      r = await kubectl(bin, kc, "api-resources");
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /deployments\s+deploy\s+apps\/v1\s+true\s+Deployment/);
      assertMatch(r.stdout, /widgets\s+wd\s+edge.example.com\/v1\s+true\s+Widget/);

      r = await kubectl(bin, kc, "get", "pod", "nope");
      assertStringIncludes(r.stderr, `pods "nope" not found`);

      r = await kubectl(bin, kc, "create", "configmap", "by-node", "--from-literal=a=b");
      assert(r.code !== 0);
      assertStringIncludes(
        r.stderr,
        `User "system:node:edge-1" cannot create resource "configmaps" in API group "" in the namespace "default"`,
      );
    }
    const rec = api.requests.find((r) => r.path === "/api/v1/pods")!;
    assertEquals(rec.user, "system:node:edge-1");
    assertEquals(rec.authn, "cert");
    assertEquals(rec.groups, ["system:nodes", "system:authenticated"]);
    assertEquals(rec.certSerial, nodeCert.serial.replace(/^0+/, ""));
    assertStringIncludes(rec.accept, "as=Table");
  } finally {
    await api.close();
  }
});

Deno.test("kubectl creates (protobuf bodies) a configmap and a deployment whose pods appear", async () => {
  const api = await start();
  try {
    const kc = await kubeconfig(api, adminCert);
    for (const [i, bin] of KUBECTLS.entries()) {
      let r = await kubectl(bin, kc, "create", "configmap", `cm${i}`, "--from-literal=k=v");
      assertEquals(r.code, 0, r.stderr);
      const post = api.requests.findLast((q) => q.method === "POST" && q.path.endsWith("/configmaps"))!;
      assertEquals(post.status, 201);
      assertEquals((api.get("v1", "ConfigMap", "default", `cm${i}`) as Any).data, { k: "v" });

      r = await kubectl(bin, kc, "create", "deployment", `web${i}`, "--image=nginx:1.27", "--replicas=2");
      assertEquals(r.code, 0, r.stderr);
      r = await kubectl(bin, kc, "get", "pods", "-l", `app=web${i}`, "-o", "wide");
      const lines = r.stdout.trim().split("\n").slice(1);
      assertEquals(lines.length, 2, r.stdout);
      for (const l of lines) {
        assertMatch(l, new RegExp(`^web${i}-[a-z0-9]{10}-[a-z0-9]{5}\\s+1/1\\s+Running.*edge-1`));
      }

      r = await kubectl(bin, kc, "scale", `deployment/web${i}`, "--replicas=3");
      assertEquals(r.code, 0, r.stderr);
      r = await kubectl(bin, kc, "get", "deploy", `web${i}`);
      assertMatch(r.stdout, new RegExp(`web${i}\\s+3/3\\s+3\\s+3`));

      r = await kubectl(bin, kc, "create", "configmap", `cm${i}`);
      assertStringIncludes(r.stderr, `configmaps "cm${i}" already exists`);
    }
    const protobufPosts = api.requests.filter((q) => q.contentType === "application/vnd.kubernetes.protobuf");
    assert(protobufPosts.length >= 2, "kubectl 1.33 sends protobuf create bodies");
  } finally {
    await api.close();
  }
});

Deno.test("kubectl get -w sees an object created afterwards (1.27 and 1.33)", async () => {
  const api = await start();
  try {
    const kc = await kubeconfig(api, nodeCert);
    for (const [i, bin] of KUBECTLS.entries()) {
      const child = new Deno.Command(bin, {
        args: ["--kubeconfig", kc, "--cache-dir", `${kc}.cache`, "get", "pods", "-w"],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      let created = false;
      const deadline = Date.now() + 15_000;
      while (!new RegExp(`late-${i}\\s+0/1\\s+Pending`).test(out) && Date.now() < deadline) {
        const { value, done } = await within(
          reader.read(),
          `kubectl get -w to print late-${i}`,
          deadline - Date.now(),
        )
          .catch(() => ({ value: "", done: true }));
        if (done) break;
        out += value;
        if (!created && out.includes("redis-0")) {
          created = true;
          api.create({
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: `late-${i}`, namespace: "default" },
            spec: { containers: [{ name: "c", image: "busybox" }], nodeName: "edge-1" },
            status: { phase: "Pending" },
          });
        }
      }
      child.kill("SIGTERM");
      await reader.cancel().catch(() => {});
      await within(child.status, "kubectl to exit after SIGTERM");
      assertMatch(out, new RegExp(`late-${i}\\s+0/1\\s+Pending`));
      const watch = api.requests.find((r) =>
        r.query.includes("watch=true") && r.userAgent.includes(bin.slice(-4))
      )!;
      assertStringIncludes(watch.accept, "as=Table");
    }
  } finally {
    await api.close();
  }
});

Deno.test("authn and authz: reader token, rogue cert, anonymous", async () => {
  const api = await start();
  try {
    const reader = await kubeconfig(api, { token: "reader-token" });
    const [k27, k33] = KUBECTLS;
    let r = await kubectl(k33, reader, "get", "secret", "db-password");
    assert(r.code !== 0);
    assertStringIncludes(
      r.stderr,
      `secrets "db-password" is forbidden: User "reader" cannot get resource "secrets" in API group "" in the namespace "default"`,
    );
    r = await kubectl(k27, reader, "get", "pods", "-o", "name");
    assertEquals(r.code, 0, r.stderr);

    const rogue = await kubeconfig(api, rogueCert);
    r = await kubectl(k33, rogue, "get", "pods");
    assert(r.code !== 0);
    // kubectl words a 401 "Unauthorized" (1.27) or "asked for the client to provide credentials" (1.33).
    assertMatch(r.stderr, /Unauthorized|provide credentials/);
    assert(api.requests.some((q) => q.authn === "invalid" && q.status === 401));

    const anon = client();
    const c = client(adminCert);
    try {
      let g = await getJson(anon, `${api.url}/version`);
      assertEquals(g.status, 200);
      assertEquals(g.body.gitVersion, "v1.31.0");
      g = await getJson(anon, `${api.url}/readyz`);
      assertEquals([g.status, g.body], [200, "ok"]);
      g = await getJson(anon, `${api.url}/api`);
      assertEquals(g.status, 403);
      assertEquals(g.body.message, `forbidden: User "system:anonymous" cannot get path "/api"`);
      g = await getJson(anon, `${api.url}/api/v1/nodes`);
      assertEquals(
        g.body.message,
        `nodes is forbidden: User "system:anonymous" cannot list resource "nodes" in API group "" at the cluster scope`,
      );
      g = await getJson(anon, `${api.url}/api/v1/pods`, { headers: { authorization: "Bearer nope" } });
      assertEquals([g.status, g.body.reason], [401, "Unauthorized"]);
      g = await getJson(c, `${api.url}/api/v1/pods`, {
        headers: { accept: "application/vnd.kubernetes.protobuf" },
      });
      assertEquals([g.status, g.body.reason], [406, "NotAcceptable"]);
    } finally {
      anon.close();
      c.close();
    }
  } finally {
    await api.close();
  }
});

Deno.test("HTTP level: CRUD, conflicts, patches, tables, paging and 410", async () => {
  const api = await start();
  const c = client(adminCert);
  try {
    const base = `${api.url}/api/v1/namespaces/default/configmaps`;
    const json = { "content-type": "application/json" };
    let r = await getJson(c, base, {
      method: "POST",
      headers: json,
      body: JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "x" },
        data: { a: "1" },
      }),
    });
    assertEquals(r.status, 201);
    const rv = r.body.metadata.resourceVersion;
    r = await getJson(c, `${base}/x`, {
      method: "PATCH",
      headers: { "content-type": "application/merge-patch+json" },
      body: JSON.stringify({ data: { b: "2" } }),
    });
    assertEquals(r.body.data, { a: "1", b: "2" });
    r = await getJson(c, `${base}/x`, {
      method: "PUT",
      headers: json,
      body: JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "x", resourceVersion: rv },
      }),
    });
    assertEquals([r.status, r.body.reason], [409, "Conflict"]);
    r = await getJson(c, `${base}/x`, {
      method: "PATCH",
      headers: { "content-type": "application/json-patch+json" },
      body: JSON.stringify([{ op: "remove", path: "/data/a" }]),
    });
    assertEquals(r.body.data, { b: "2" });
    r = await getJson(c, `${base}/x`, { method: "DELETE" });
    assertEquals([r.status, r.body.status], [200, "Success"]);
    r = await getJson(c, `${base}/x`);
    assertEquals(r.body.message, `configmaps "x" not found`);

    r = await getJson(c, `${api.url}/api/v1/namespaces/default/pods/nginx-1`, {
      headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" },
    });
    assertEquals(r.body.kind, "Table");
    assertEquals(r.body.columnDefinitions[0].name, "Name");
    assertEquals(r.body.rows[0].cells.slice(0, 3), ["nginx-1", "1/1", "Running"]);
    assertEquals(r.body.rows[0].object.kind, "PartialObjectMetadata");

    r = await getJson(c, `${api.url}/api/v1/namespaces/kube-system/serviceaccounts/default/token`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { audiences: ["x"] },
      }),
    });
    assertEquals(r.status, 201);
    assert(r.body.status.token.length > 20 && r.body.status.expirationTimestamp);

    r = await getJson(c, `${api.url}/api/v1/namespaces/kube-system/pods`, {
      headers: { accept: "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io" },
    });
    assertEquals(r.body.kind, "PartialObjectMetadataList");
    assertEquals(r.body.items[0].metadata.namespace, "kube-system");
    assertEquals(r.body.items[0].spec, undefined);

    r = await getJson(c, base, { method: "POST", headers: { "content-type": "text/csv" }, body: "a,b" });
    assertEquals(r.status, 415);

    // Status subresource: a node updates its status only; a node may not delete configmaps.
    const nodeClient = client(nodeCert);
    try {
      r = await getJson(nodeClient, `${api.url}/api/v1/nodes/edge-1/status`, {
        method: "PATCH",
        headers: { "content-type": "application/strategic-merge-patch+json" },
        body: JSON.stringify({ status: { phase: "Running" }, spec: { unschedulable: true } }),
      });
      assertEquals(r.status, 200);
      assertEquals([r.body.status.phase, r.body.spec.unschedulable], ["Running", undefined]);
      r = await getJson(nodeClient, `${api.url}/api/v1/namespaces/default/configmaps/app-config`, {
        method: "DELETE",
      });
      assertEquals(r.status, 403);
    } finally {
      nodeClient.close();
    }

    r = await getJson(
      c,
      `${api.url}/api/v1/pods?labelSelector=${encodeURIComponent("app in (nginx,redis),tier!=x")}`,
    );
    assertEquals(r.body.items.map((p: Any) => p.metadata.name), ["nginx-1", "nginx-2", "redis-0"]);

    // Paging over every pod, then an expired continue token.
    const all = (await getJson(c, `${api.url}/api/v1/pods`)).body.items.length;
    const names: string[] = [];
    let cont = "";
    let first: Any;
    do {
      r = await getJson(c, `${api.url}/api/v1/pods?limit=2${cont ? `&continue=${cont}` : ""}`);
      first ??= r.body;
      names.push(...r.body.items.map((p: Any) => p.metadata.name));
      cont = r.body.metadata.continue ?? "";
    } while (cont);
    assertEquals(names.length, all);
    assertEquals(first.metadata.remainingItemCount, all - 2);
    api.create({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "bump", namespace: "default" } });
    api.compact();
    r = await getJson(c, `${api.url}/api/v1/pods?limit=2&continue=${first.metadata.continue}`);
    assertEquals([r.status, r.body.reason], [410, "Expired"]);
  } finally {
    c.close();
    await api.close();
  }
});

Deno.test("watch: resourceVersion replay, selector transitions, 410, bookmarks, sendInitialEvents", async () => {
  const api = await start({ bookmarkIntervalMs: 50 });
  const c = client(nodeCert);
  try {
    const cm = (name: string, labels: Obj = {}) => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, namespace: "default", labels },
    });
    const a = api.create(cm("wa", { team: "x" })) as Any;
    const rv0 = a.metadata.resourceVersion;
    const b = api.create(cm("wb", { team: "x" })) as Any;
    api.update({ ...b, metadata: { ...b.metadata, labels: { team: "y" } } });

    const url = `${api.url}/api/v1/namespaces/default/configmaps?watch=1&labelSelector=team%3Dx`;
    const events = await readWatch(c, `${url}&resourceVersion=${rv0}`, (e) => e.length >= 2);
    assertEquals(events.map((e) => [e.type, e.object.metadata.name]), [["ADDED", "wb"], ["DELETED", "wb"]]);

    // A live event arrives after the stream opened.
    const rvNow = (api.get("v1", "ConfigMap", "default", "wb") as Any).metadata.resourceVersion;
    const live = await readWatch(
      c,
      `${url}&resourceVersion=${rvNow}`,
      (e) => e.some((x) => x.object.metadata.name === "wc"),
      () => api.create(cm("wc", { team: "x" })),
    );
    assertEquals(live[0].type, "ADDED");

    api.compact();
    const wd = api.create(cm("wd")) as Any;
    const gone = await readWatch(c, `${url}&resourceVersion=${rv0}`, (e) => e.length >= 1);
    assertEquals(gone[0].type, "ERROR");
    assertEquals([gone[0].object.code, gone[0].object.reason], [410, "Expired"]);

    const bm = await readWatch(
      c,
      `${url}&allowWatchBookmarks=true`,
      (e) => e.some((x) => x.type === "BOOKMARK"),
    );
    const bookmark = bm.find((x) => x.type === "BOOKMARK");
    assertEquals(bookmark.object.kind, "ConfigMap");
    assertEquals(bookmark.object.metadata.resourceVersion, wd.metadata.resourceVersion);

    const init = await readWatch(
      c,
      `${url}&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`,
      (e) => e.some((x) => x.type === "BOOKMARK"),
    );
    assertEquals(init.map((e) => e.type), ["ADDED", "ADDED", "BOOKMARK"]);
    assertEquals(init[2].object.metadata.annotations, { "k8s.io/initial-events-end": "true" });

    const legacy = await readWatch(
      c,
      `${api.url}/api/v1/watch/namespaces/default/configmaps/wa?resourceVersion=0`,
      (e) => e.length >= 1,
    );
    assertEquals(legacy.map((e) => e.object.metadata.name), ["wa"]);

    const timed = await readWatch(c, `${url}&resourceVersion=0&timeoutSeconds=1`, () => false);
    assertEquals(timed.length, 2);

    const bad = await getJson(c, `${url}&sendInitialEvents=true`);
    assertEquals(bad.status, 422);
  } finally {
    c.close();
    await api.close();
  }
});

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", (e: Error & { code?: string }) => resolve(e.code === "ECONNREFUSED"));
  });
}

Deno.test("fault modes: blackhole hangs, refuse refuses, none recovers on the same port", async () => {
  const api = await start();
  try {
    // An open watch freezes under blackhole and is dropped on recovery.
    const wc = client(adminCert);
    const res = await fetch(`${api.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0`, {
      client: wc,
    });
    const reader = res.body!.getReader();
    await within(reader.read(), "the watch's first bytes");
    await api.setFault("blackhole");

    const c1 = client(adminCert);
    await assertRejects(() =>
      fetch(`${api.url}/version`, { client: c1, signal: AbortSignal.timeout(500) }).then((r) => r.text())
    );
    c1.close();

    await api.setFault("refuse");
    assert(await connectRefused(api.port));
    await api.setFault("none");
    // The frozen watch was dropped: the stream ends (error or done) instead of hanging.
    await within(
      reader.read().then(async (r) => {
        while (!r.done) r = await reader.read();
      }).catch(() => {}),
      "the frozen watch to be dropped on recovery",
    );
    wc.close();

    const c2 = client(adminCert);
    const r = await getJson(c2, `${api.url}/api/v1/namespaces/default/pods/nginx-1`);
    assertEquals(r.status, 200);
    c2.close();
    const d = client(adminCert);
    assertEquals((await getJson(d, `${api.directUrl}/healthz`)).body, "ok");
    d.close();
  } finally {
    await api.close();
  }
});
