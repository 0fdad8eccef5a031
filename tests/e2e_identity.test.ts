/**
 * Identity end to end: each Authorization variant is authenticated by the simulated apiserver as
 * the real one would, and the proxy caches the answer only under that same identity, or not at all
 * when it cannot be sure. A certificate gets a configured pair only with the pair's CN and groups.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { connect } from "node:tls";
import { type Cluster, httpsClient, type LiteProcess, startCluster, startLite } from "./support/harness.ts";

/** One request on its own TLS connection, headers exactly as given (repeats included). */
function rawRequest(
  port: number,
  ca: string,
  path: string,
  headers: string[],
  pair?: { certPem: string; keyPem: string },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ca, cert: pair?.certPem, key: pair?.keyPem }, () => {
      s.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
          headers.map((h) => `${h}\r\n`).join("") + "\r\n",
      );
    });
    const chunks: Uint8Array[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete answer to GET ${path} within 20s`));
    }, 20_000);
    s.on("data", (c: Uint8Array) => chunks.push(c));
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("end", () => {
      clearTimeout(timer);
      const text = new TextDecoder().decode(Buffer.concat(chunks));
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
      s.destroy();
    });
  });
}

/** An upgrade request on its own TLS connection: resolves with the response head, then closes. */
function rawUpgradeHead(port: number, ca: string, path: string, headers: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ca }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n`);
    });
    let text = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no response head to the upgrade of ${path} within 20s: ${JSON.stringify(text)}`));
    }, 20_000);
    s.on("data", (c: Uint8Array) => {
      text += new TextDecoder().decode(c);
      if (text.includes("\r\n\r\n")) {
        clearTimeout(timer);
        s.destroy();
        resolve(text.slice(0, text.indexOf("\r\n\r\n")));
      }
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One slow probe on a loaded machine must not flip the proxy offline mid-test. */
const STEADY = ["--health-check-failures", "3"];
const APP_CONFIG = "/api/v1/namespaces/default/configmaps/app-config";
const KP_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kube-proxy";

Deno.test("identity is derived as the apiserver derives it; unsure means never cached", async (t) => {
  const cluster: Cluster = await startCluster();
  let lite: LiteProcess | undefined;
  try {
    lite = await startLite(cluster, { extra: ["--log-level", "debug", ...STEADY] });
    const port = lite.port;
    const ca = cluster.pki.caPem;
    const upstreamUser = (path: string, from: number) => {
      const rec = cluster.apiserver.requests.slice(from).filter((r) => r.path === path).at(-1);
      assert(rec, `the upstream saw ${path}`);
      return `${rec.authn}:${rec.user}`;
    };
    const get = async (path: string, auth: string[]) => {
      const from = cluster.apiserver.requests.length;
      const r = await rawRequest(port, ca, path, auth.map((a) => `Authorization: ${a}`));
      return { status: r.status, upstream: upstreamUser(path, from), text: r.text };
    };

    await t.step("online: the upstream authenticates each variant as the real apiserver would", async () => {
      // A trailing field does not change the token: the upstream sees reader.
      assertEquals((await get(APP_CONFIG, ["Bearer reader-token extra"])).upstream, "token:reader");
      assertEquals(
        (await get("/api/v1/namespaces/default/configmaps", ["bearer reader-token"])).upstream,
        "token:reader",
      );
      // Two headers: the apiserver reads the first, but the proxy cannot be sure what is in between.
      const dup = await get(KP_CONFIG, ["Bearer reader-token", "Bearer admin-token"]);
      assertEquals([dup.status, dup.upstream], [200, "token:reader"]);
      // Another scheme, an empty token (two spaces), a tab: no bearer credential, anonymous upstream.
      for (const a of ["Basic cmVhZGVyOng=", "Bearer  reader-token", "Bearer\treader-token"]) {
        const r = await get("/version", [a]);
        assertEquals([r.status, r.upstream], [200, "anonymous:system:anonymous"], a);
      }
      await lite!.waitForLine(/identity=uncertain/);
    });

    await t.step(
      "online: an exec client's WebSocket bearer subprotocol reaches the upstream as its token",
      async () => {
        const exec = "/api/v1/namespaces/default/pods/nginx-1/exec";
        const b64 = btoa("reader-token").replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
        const from = cluster.apiserver.requests.length;
        const head = await rawUpgradeHead(port, ca, `${exec}?command=sh`, [
          "Connection: Upgrade",
          "Upgrade: websocket",
          "Sec-WebSocket-Version: 13",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          `Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.${b64}, v5.channel.k8s.io`,
        ]);
        assert(head.startsWith("HTTP/1.1 101"), head);
        assertEquals(upstreamUser(exec, from), "token:reader");
      },
    );

    await t.step(
      "offline: each answer is served only to its own identity, unsure ones to nobody",
      async () => {
        await cluster.apiserver.setFault("refuse");
        await lite!.waitForLine(/upstream unreachable: offline/);
        const anonymous = httpsClient(lite!.url, ca);
        const reader = httpsClient(lite!.url, ca, { token: "reader-token" });
        try {
          // The reader's ConfigMap is cached under the reader's token, never as anonymous.
          assertEquals((await anonymous.json(APP_CONFIG)).status, 503);
          const own = await reader.json(APP_CONFIG);
          assertEquals([own.status, own.headers.get("x-lite-apiserver-source")], [200, "cache"]);
          assertEquals((await reader.json("/api/v1/namespaces/default/configmaps")).status, 200);
          // Nothing fetched with uncertain credentials was cached, under anyone.
          assertEquals((await reader.json(KP_CONFIG)).status, 503);
          assertEquals((await anonymous.json("/version")).status, 503);
          assertEquals((await reader.json("/version")).status, 503);
          // And an uncertain request is never answered from the cache, with the reason.
          const basic = await rawRequest(port, ca, APP_CONFIG, ["Authorization: Basic cmVhZGVyOng="]);
          assertEquals(basic.status, 503);
          assert(
            /cannot be classified \(Authorization scheme \\"Basic\\" is not Bearer\)/.test(basic.text),
            basic.text,
          );
          const dup = await rawRequest(port, ca, APP_CONFIG, [
            "Authorization: Bearer reader-token",
            "Authorization: Bearer reader-token",
          ]);
          assertEquals(dup.status, 503);
          assert(/several Authorization headers/.test(dup.text), dup.text);
        } finally {
          anonymous.close();
          reader.close();
        }
      },
    );
  } finally {
    await lite?.kill();
    await cluster.close();
  }
});

Deno.test("a certificate with a pair's CN but other groups does not get the pair or its cache", async (t) => {
  const cluster: Cluster = await startCluster();
  let lite: LiteProcess | undefined;
  try {
    lite = await startLite(cluster, { extra: STEADY });
    const ca = cluster.pki.caPem;
    const forged = await cluster.pki.client("system:node:edge-1", ["viewers"], { name: "forged" });
    const reordered = await cluster.pki.client("system:node:edge-1", ["system:nodes", "system:nodes"], {
      name: "same-groups",
    });
    const node = "/api/v1/nodes/edge-1";

    await t.step(
      "online: the forged certificate reaches the upstream without the kubelet's pair",
      async () => {
        const kubelet = await rawRequest(lite!.port, ca, node, [], cluster.kubelet);
        assertEquals(kubelet.status, 200);
        const from = cluster.apiserver.requests.length;
        const r = await rawRequest(lite!.port, ca, node, [], forged);
        const rec = cluster.apiserver.requests.slice(from).find((x) => x.path === node);
        assertEquals([rec?.authn, rec?.user], ["anonymous", "system:anonymous"]);
        assertEquals(r.status, 403);
        // The same set of groups is the same identity.
        assertEquals((await rawRequest(lite!.port, ca, node, [], reordered)).status, 200);
      },
    );

    await t.step("offline: the forged certificate does not read the kubelet's cache", async () => {
      await cluster.apiserver.setFault("refuse");
      await lite!.waitForLine(/upstream unreachable: offline/);
      assertEquals((await rawRequest(lite!.port, ca, node, [], cluster.kubelet)).status, 200);
      assertEquals((await rawRequest(lite!.port, ca, node, [], forged)).status, 503);
    });
  } finally {
    await lite?.kill();
    await cluster.close();
  }
});

Deno.test("unverified client certificates are logged with their real reason", async () => {
  const cluster: Cluster = await startCluster();
  let lite: LiteProcess | undefined;
  try {
    lite = await startLite(cluster, { extra: STEADY });
    const day = 86_400_000;
    const cases: Array<[string, { certPem: string; keyPem: string }, RegExp]> = [
      [
        "expired",
        await cluster.pki.client("old-node", [], {
          name: "expired",
          notBefore: new Date(Date.now() - 10 * day),
          notAfter: new Date(Date.now() - day),
        }),
        /cn=old-node reason="expired \(notAfter /,
      ],
      [
        "not yet valid",
        await cluster.pki.client("future-node", [], {
          name: "future",
          notBefore: new Date(Date.now() + day),
          notAfter: new Date(Date.now() + 10 * day),
        }),
        /cn=future-node reason="not yet valid \(notBefore /,
      ],
      ["rogue", await cluster.pki.rogue("admin", ["system:masters"]), /cn=admin reason="unknown issuer \(/],
    ];
    for (const [what, pair, line] of cases) {
      const r = await rawRequest(lite.port, cluster.pki.caPem, "/version", [], pair);
      assertEquals(r.status, 200, `${what}: served as anonymous`);
      await lite.waitForLine(line, 10_000);
    }
  } finally {
    await lite?.kill();
    await cluster.close();
  }
});
