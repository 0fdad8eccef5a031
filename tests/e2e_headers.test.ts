/**
 * Headers as the client sent them (issue 20 item 3), end to end through the real lite-apiserver:
 * repeated identity fields reach the simulated apiserver as repeated fields (kubectl --as-group,
 * raw requests), and a Connection field naming an identity header is refused with 400 before
 * anything goes upstream.
 */
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import tls from "node:tls";
import { kubectlBounded } from "./support/clients.ts";
import { MessageReader } from "../lib/http/message_reader.ts";
import type { ResponseHead } from "../lib/http/head_parser.ts";
import { type Cluster, startCluster, startLite, within, writeKubeconfig } from "./support/harness.ts";

/**
 * Sends one raw request over TLS and returns the bytes of the answer: up to the end of the first
 * whole response, or to the close when the server ends the connection first.
 */
export async function rawExchange(
  port: number,
  ca: string,
  request: string,
  what: string,
): Promise<string> {
  const sock = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
  const reader = new MessageReader<ResponseHead>("response");
  let got = "";
  const answered = new Promise<void>((resolve) => {
    sock.on("data", (d: Uint8Array) => {
      got += new TextDecoder("latin1").decode(d);
      if (!reader.push(d) || reader.messages.length > 0) resolve();
    });
    sock.once("close", () => resolve());
    sock.on("error", () => {});
  });
  sock.write(request);
  try {
    await within(answered, `${what}: lite-apiserver's answer; got so far: ${got.slice(0, 300)}`);
  } finally {
    sock.destroy();
  }
  return got;
}

/** The raw header fields named `name` (any case) a recorded request carried, in order. */
function fields(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) out.push(raw[i + 1]);
  return out;
}

Deno.test({
  name: "headers: repeated identity fields go upstream repeated; Connection naming one is a 400",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const cluster: Cluster = await startCluster();
    const lite = await startLite(cluster);
    const api = cluster.apiserver;
    const ca = cluster.pki.caPem;
    try {
      await t.step("kubectl --as=x --as-group=a --as-group=b: two groups, not one named 'a, b'", async () => {
        const kc = await writeKubeconfig(cluster.dir, "admin", lite.url, cluster.pki.caCert, {
          token: "admin-token",
        });
        for (const version of ["1.27", "1.33"]) {
          const from = api.requests.length;
          const r = await kubectlBounded(version, kc, [
            "--as=x",
            "--as-group=a",
            "--as-group=b",
            "get",
            "configmaps",
            "-n",
            "default",
          ]);
          assertEquals(r.code, 0, `kubectl ${version}: ${r.stderr}`);
          const rec = api.requests.slice(from).find((x) =>
            x.path === "/api/v1/namespaces/default/configmaps"
          );
          if (!rec) throw new Error(`kubectl ${version}: the list never reached the apiserver`);
          assertEquals(rec.impersonation, { user: "x", groups: ["a", "b"], extra: {} }, `kubectl ${version}`);
          assertEquals([rec.user, rec.groups], ["x", ["a", "b", "system:authenticated"]]);
          assertEquals(fields(rec.rawHeaders, "impersonate-group"), ["a", "b"]);
        }
      });

      await t.step(
        "repeated Impersonate-User, Impersonate-Group, Accept fields stay apart, in order",
        async () => {
          const from = api.requests.length;
          const got = await rawExchange(
            lite.port,
            ca,
            "GET /api/v1/namespaces/default/configmaps?limit=1 HTTP/1.1\r\nHost: x\r\n" +
              "Authorization: Bearer admin-token\r\n" +
              "Impersonate-User: first\r\nimpersonate-user: second\r\n" +
              "Impersonate-Group: devs\r\nIMPERSONATE-GROUP: system:masters\r\nImpersonate-Group: a, b\r\n" +
              "Impersonate-Extra-Scopes: s1\r\nimpersonate-extra-scopes: s2\r\n" +
              "Accept: application/json\r\nAccept: application/yaml\r\nConnection: close\r\n\r\n",
            "repeated impersonation fields",
          );
          assertMatch(got, /^HTTP\/1\.1 200 /);
          const rec = api.requests.slice(from).find((x) =>
            x.path === "/api/v1/namespaces/default/configmaps"
          );
          if (!rec) throw new Error("the list never reached the apiserver");
          assertEquals(rec.impersonation, {
            user: "first",
            groups: ["devs", "system:masters", "a, b"],
            extra: { scopes: ["s1", "s2"] },
          });
          assertEquals(rec.user, "first");
          assertEquals(fields(rec.rawHeaders, "accept"), ["application/json", "application/yaml"]);
          assertEquals(fields(rec.rawHeaders, "impersonate-user"), ["first", "second"]);
        },
      );

      await t.step(
        "Connection naming Authorization or Impersonate-*: 400, nothing sent upstream",
        async () => {
          for (
            const [connection, extra] of [
              ["Authorization", ""],
              ["keep-alive, authorization", ""],
              ["Impersonate-User", "Impersonate-User: x\r\n"],
              ["Impersonate-Group", "Impersonate-User: x\r\nImpersonate-Group: g\r\n"],
            ]
          ) {
            const path = `/api/v1/namespaces/default/configmaps/conn-${crypto.randomUUID().slice(0, 8)}`;
            const got = await rawExchange(
              lite.port,
              ca,
              `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n${extra}` +
                `Connection: ${connection}\r\n\r\n`,
              `Connection: ${connection}`,
            );
            assertMatch(got, /^HTTP\/1\.1 400 /, `Connection: ${connection}: ${got.slice(0, 200)}`);
            assertMatch(got, /"reason":"BadRequest"/);
            assertMatch(got, /names (authorization|impersonate-user|impersonate-group)/);
            assertEquals(
              api.requests.filter((x) => x.path === path).length,
              0,
              `${connection}: not forwarded`,
            );
          }
          // An upgrade request too (kubectl exec): refused before any upstream connection.
          const path = `/api/v1/namespaces/default/pods/conn-${crypto.randomUUID().slice(0, 8)}/exec`;
          const got = await rawExchange(
            lite.port,
            ca,
            `POST ${path}?command=sh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n` +
              "Connection: Upgrade, Authorization\r\nUpgrade: SPDY/3.1\r\n\r\n",
            "an upgrade with Connection: Upgrade, Authorization",
          );
          assertMatch(got, /^HTTP\/1\.1 400 /, got.slice(0, 200));
          assertEquals(
            api.requests.filter((x) => x.path === path).length,
            0,
            "the upgrade was not forwarded",
          );
        },
      );
    } finally {
      await lite.kill();
      await cluster.close();
    }
  },
});
