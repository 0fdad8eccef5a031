/**
 * Honest framing towards the client (issue 20 item 4), end to end through the real lite-apiserver:
 * - against a scripted hostile upstream: a close-delimited answer ended by the connection's close
 *   reaches the client as incomplete (no last chunk, connection dropped) and is never cached; a 101
 *   to a request that asked for no upgrade is a 502 that closes the connection, nothing cached;
 * - against the simulated apiserver: a refused upgrade (403, chunked) reaches the client as a
 *   message it can parse.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import tls from "node:tls";
import { MessageReader } from "../lib/http/message_reader.ts";
import type { ResponseHead } from "../lib/http/head_parser.ts";
import { eventually, runLite, startCluster, startLite, within } from "./support/harness.ts";
import { removeScriptPki, type ScriptConn, startScriptServer } from "./support/tls_script_server.ts";

const enc = new TextEncoder();

interface Exchange {
  /** Everything the server sent. */
  text: string;
  /** The whole responses parsed from it. */
  reader: MessageReader<ResponseHead>;
  /** The server closed the connection (within the wait). */
  closed: boolean;
}

/**
 * Sends one raw request over TLS and waits for the server to close the connection, or for one
 * whole response when `untilClose` is false. Bounded: a server that does neither fails the test.
 */
async function exchange(
  port: number,
  ca: string,
  request: string,
  what: string,
  untilClose: boolean,
): Promise<Exchange> {
  const sock = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
  const reader = new MessageReader<ResponseHead>("response");
  const x: Exchange = { text: "", reader, closed: false };
  const done = new Promise<void>((resolve) => {
    sock.on("data", (d: Uint8Array) => {
      x.text += new TextDecoder("latin1").decode(d);
      reader.push(d);
      if (!untilClose && reader.messages.length > 0) resolve();
    });
    sock.once("close", () => {
      x.closed = true;
      resolve();
    });
    sock.on("error", () => {});
  });
  sock.write(request);
  try {
    await within(
      done,
      `${what}: ${untilClose ? "the connection to close" : "a whole answer"}`,
    );
  } finally {
    sock.destroy();
  }
  return x;
}

const cm = (name: string) =>
  JSON.stringify({
    kind: "ConfigMap",
    apiVersion: "v1",
    metadata: { name, namespace: "default", resourceVersion: "7", uid: `uid-${name}` },
    data: { payload: "x".repeat(2000) },
  });

function answer(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    enc.encode(body).length
  }\r\n` +
    `${extra}\r\n${body}`;
}

Deno.test({
  name: "framing: truncated close-delimited answers and unexpected 101s are never passed on as whole",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    let ready = true;
    const base = "/api/v1/namespaces/default/configmaps";
    const s = await startScriptServer((req, conn: ScriptConn) => {
      const path = req.head.url.split("?")[0];
      const w = (x: string) => conn.socket.write(x);
      if (path === "/readyz") {
        // Close-delimited: never taken as a whole body, but its status still tells the health checks.
        w(ready ? "HTTP/1.1 200 OK\r\n\r\nok" : "HTTP/1.1 500 Internal Server Error\r\n\r\nfail");
        return void conn.socket.end();
      }
      if (path === `${base}/whole`) {
        return void w(answer(cm("whole"), 'Warning: 299 - "one"\r\nwarning: 299 - "two, with a comma"\r\n'));
      }
      if (path === `${base}/cut` || path === `${base}/ends`) {
        // Close-delimited: the connection's end ends the body, half way through the object (cut)
        // or after all of it (ends). node:tls in Deno cannot tell a bare FIN from close_notify, so
        // lite-apiserver cannot tell these two apart either: neither may pass as whole.
        const body = cm(path.slice(base.length + 1));
        w(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n`);
        w(path.endsWith("cut") ? body.slice(0, 900) : body);
        return void conn.socket.end();
      }
      if (path === `${base}/switch`) {
        // A protocol switch nobody asked for, then an answer that looks whole.
        return void w(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n${answer(cm("switch"))}`);
      }
      w("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
    });
    const pair = await s.pki.server("lite-framing");
    const cacheDir = await Deno.makeTempDir({ prefix: "lite-framing-" });
    const lite = runLite([
      "serve",
      "--kube-apiserver-url",
      s.url,
      "--ca-file",
      s.pki.caCert,
      "--tls-cert-file",
      pair.cert,
      "--tls-private-key-file",
      pair.key,
      "--port",
      "0",
      "--admin-port",
      "0",
      "--cache-dir",
      cacheDir,
      "--backend-timeout",
      "1s",
      "--health-check-interval",
      "300ms",
      "--health-check-failures",
      "2",
    ]);
    const ca = s.pki.caPem;
    const get = (name: string, untilClose: boolean) =>
      exchange(
        port,
        ca,
        `GET ${base}/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer framing-token\r\nAccept: application/json\r\n\r\n`,
        `GET ${name}`,
        untilClose,
      );
    let port = 0;
    try {
      const line = await lite.waitForLine(/listening on https:\/\/\S+:(\d+)/);
      port = Number(/listening on https:\/\/\S+?:(\d+)/.exec(line)![1]);

      await t.step("a close-delimited readyz answer keeps the upstream healthy", async () => {
        // Probes are 300 ms apart and 2 failures make it offline: after 3, it would have said so.
        const probes = () => s.requests.filter((q) => q.path === "/readyz").length;
        await eventually(() => probes() >= 3, "three readyz probes");
        assertEquals(lite.lines.filter((l) => /unhealthy|unreachable/.test(l)), []);
      });

      await t.step("a whole answer is relayed whole (the control)", async () => {
        const x = await get("whole", false);
        assertEquals(x.reader.messages[0]?.head.statusCode, 200, x.text.slice(0, 200));
        assertEquals(JSON.parse(new TextDecoder().decode(x.reader.messages[0].body)).metadata.name, "whole");
        // Repeated answer fields reach the client repeated, not joined.
        assertMatch(x.text, /\r\nwarning: 299 - "one"\r\nwarning: 299 - "two, with a comma"\r\n/i);
      });

      await t.step(
        "a close-delimited answer ended by the close: no last chunk, the connection dropped",
        async () => {
          for (const name of ["ends", "cut"]) {
            const x = await get(name, true);
            assert(x.closed, `${name}: the connection was closed`);
            assertMatch(x.text, /^HTTP\/1\.1 200 /);
            assertMatch(x.text, /transfer-encoding: chunked/i);
            assertEquals(
              x.reader.messages.length,
              0,
              `${name}: no whole message reached the client: ${x.text.slice(-80)}`,
            );
            assert(!/\r\n0\r\n\r\n$/.test(x.text), `${name}: no last chunk`);
          }
        },
      );

      await t.step("a 101 to a request that asked for no upgrade: 502, the connection closed", async () => {
        const x = await get("switch", true);
        assert(x.closed, "the connection was closed");
        const m = x.reader.messages;
        assertEquals(m.length, 1, x.text.slice(0, 300));
        assertEquals(m[0].head.statusCode, 502);
        assertEquals(String(m[0].head.headers.connection).toLowerCase(), "close");
        assertMatch(new TextDecoder().decode(m[0].body), /switched protocols \(101\)/);
      });

      await t.step(
        "offline: the whole answer is served from the cache, the others were never cached",
        async () => {
          const from = lite.lines.length;
          ready = false;
          await lite.waitForLine(/upstream unreachable/, 20_000, from);
          const whole = await get("whole", false);
          assertEquals(whole.reader.messages[0]?.head.statusCode, 200, whole.text.slice(0, 300));
          for (const name of ["cut", "ends", "switch"]) {
            const x = await get(name, false);
            assertEquals(x.reader.messages[0]?.head.statusCode, 503, `${name}: ${x.text.slice(0, 300)}`);
            assertMatch(x.text, /nothing is cached for this request/);
          }
        },
      );
    } finally {
      await lite.kill();
      await s.close();
      await removeScriptPki();
      await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "framing: what RFC 9112 allows is accepted end to end (HTTP/1.2, BWS before ';'), an empty extension name is not",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await startCluster();
    await using lite = await startLite(cluster);
    const ca = cluster.pki.caPem;
    const v = await exchange(
      lite.port,
      ca,
      "GET /version HTTP/1.2\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n\r\n",
      "GET /version over HTTP/1.2",
      false,
    );
    assertEquals(v.reader.messages[0]?.head.statusCode, 200, v.text.slice(0, 200));
    const post = (name: string, ext: string) => {
      const body = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name } });
      const a = body.slice(0, 10), b = body.slice(10);
      return exchange(
        lite.port,
        ca,
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n" +
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
          `${a.length.toString(16)}${ext}\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`,
        `a chunked POST with extension ${JSON.stringify(ext)}`,
        false,
      );
    };
    const created = await post("bws-ext", " ;a=1");
    assertEquals(created.reader.messages[0]?.head.statusCode, 201, created.text.slice(0, 300));
    assert(cluster.apiserver.get("v1", "ConfigMap", "default", "bws-ext"), "the configmap was created");
    const refused = await post("empty-ext", ";");
    assertEquals(refused.reader.messages[0]?.head.statusCode, 400, refused.text.slice(0, 300));
    assertEquals(cluster.apiserver.get("v1", "ConfigMap", "default", "empty-ext"), undefined);
  },
});

Deno.test({
  name: "framing: a refused upgrade (403, chunked upstream) reaches the client as a message it can parse",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await startCluster();
    await using lite = await startLite(cluster);
    for (
      const [who, auth, status] of [["anonymous", "", 403], [
        "a bad token",
        "Authorization: Bearer nope\r\n",
        401,
      ]]
    ) {
      const x = await exchange(
        lite.port,
        cluster.pki.caPem,
        "POST /api/v1/namespaces/default/pods/nginx-1/exec?command=sh&stdin=true HTTP/1.1\r\nHost: x\r\n" +
          `${auth}Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`,
        `exec as ${who}`,
        true,
      );
      assertEquals(x.reader.error, undefined, `${who}: the answer parses: ${x.text}`);
      assertEquals(x.reader.messages.length, 1, `${who}: one whole answer: ${x.text}`);
      const m = x.reader.messages[0];
      assertEquals(m.head.statusCode, status);
      const body = JSON.parse(new TextDecoder().decode(m.body));
      assertEquals([body.kind, body.code], ["Status", status]);
      assert(x.closed, "the connection closes after a refused upgrade");
    }
  },
});
