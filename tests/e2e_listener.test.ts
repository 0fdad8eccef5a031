/**
 * End to end, the listener's HTTP/1.1 layer against the real process: keep-alive connections that
 * do not stall whatever the timing of the upstream's bytes, pipelining, 100-continue, the
 * request-body limit (413 before the body), the per-request header timeout (slowloris), and the
 * connection cap. Clients are curl and raw TLS sockets (exact bytes on the wire).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import tls from "node:tls";
import type { CertPair } from "./support/pki.ts";
import { type Cluster, startCluster, startLite } from "./support/harness.ts";
import { MessageReader } from "../lib/http/message_reader.ts";
import type { ResponseHead } from "../lib/http/head_parser.ts";

const dec = new TextDecoder();

/** A raw TLS connection to the proxy; responses are read with the codec's message reader. */
interface Raw {
  socket: tls.TLSSocket;
  reader: MessageReader<ResponseHead>;
  closed: Promise<void>;
  isClosed(): boolean;
  send(text: string | Uint8Array): void;
  /** Waits until `n` messages (1xx included) have arrived in all, or the connection closed. */
  responses(
    n: number,
    timeoutMs?: number,
  ): Promise<{ status: number; headers: ResponseHead["headers"]; body: string }[]>;
}

function raw(port: number, cluster: Cluster, methods: string[], pair?: CertPair): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const reader = new MessageReader<ResponseHead>("response", {}, methods);
    const waiters = new Set<() => void>();
    let closed = false;
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      ca: cluster.pki.caPem,
      ...(pair ? { cert: pair.certPem, key: pair.keyPem } : {}),
    }, () => resolve(conn));
    socket.on("data", (c: Uint8Array) => {
      reader.push(c);
      for (const w of waiters) w();
    });
    socket.on("error", (e) => closed ? undefined : reject(e));
    const closedP = new Promise<void>((r) =>
      socket.on("close", () => {
        closed = true;
        reader.end();
        for (const w of waiters) w();
        r();
      })
    );
    const conn: Raw = {
      socket,
      reader,
      closed: closedP,
      isClosed: () => closed,
      send: (t) => socket.write(t),
      responses: (n, timeoutMs = 15_000) =>
        new Promise((res, rej) => {
          const check = () => {
            if (reader.messages.length >= n || closed || reader.error) {
              waiters.delete(check);
              clearTimeout(timer);
              res(reader.messages.map((m) => ({
                status: m.head.statusCode,
                headers: m.head.headers,
                body: dec.decode(m.body),
              })));
            }
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            rej(new Error(`timed out waiting for ${n} responses (got ${reader.messages.length})`));
          }, timeoutMs);
          waiters.add(check);
          check();
        }),
    };
  });
}

/**
 * An upstream on node:tls whose answers arrive in two pieces: the head with its Content-Length,
 * then, `gapMs` later, the body (as a WAN or Python's http.server delivers them).
 */
async function splitUpstream(cluster: Cluster, gapMs: number) {
  const pair = await cluster.pki.server("split-upstream");
  let served = 0;
  const server = tls.createServer({ cert: pair.certPem, key: pair.keyPem }, (socket) => {
    let buf = "";
    socket.on("error", () => {});
    socket.on("data", (c: Uint8Array) => {
      buf += dec.decode(c);
      let end;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const path = head.split(" ")[1];
        const body = JSON.stringify({
          kind: "ConfigMap",
          apiVersion: "v1",
          metadata: { name: "split", namespace: "default", resourceVersion: String(++served) },
          data: { path, pad: "x".repeat(2500) },
        });
        socket.write(
          `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        setTimeout(() => socket.write(body), gapMs);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    served: () => served,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("curl", { args, stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("several requests on one keep-alive connection are all answered when the upstream's body arrives late", async () => {
  const cluster = await startCluster();
  const upstream = await splitUpstream(cluster, 40);
  const lite = await startLite(cluster, { upstream: upstream.url });
  try {
    const n = 6;
    const args = [
      "-sS",
      "--max-time",
      "20",
      "--cacert",
      cluster.pki.caCert,
      "--cert",
      cluster.kubelet.cert,
      "--key",
      cluster.kubelet.key,
    ];
    for (let i = 0; i < n; i++) {
      args.push(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\\n",
        `${lite.url}/api/v1/namespaces/default/configmaps/c${i}`,
      );
    }
    const r = await curl(args);
    assertEquals(r.code, 0, `curl: ${r.stderr}`);
    const lines = r.stdout.trim().split("\n");
    assertEquals(lines.map((l) => l.split(" ")[0]), Array(n).fill("200"), "every request answered");
    // One TLS connection for all of them: the first request connects, the others reuse it.
    assertEquals(lines.map((l) => l.split(" ")[1]), ["1", ...Array(n - 1).fill("0")]);
  } finally {
    await lite.kill();
    await upstream.close();
    await cluster.close();
  }
});

Deno.test("the listener's HTTP/1.1 layer", async (t) => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, {
    extra: ["--request-header-timeout", "1s", "--max-request-body-bytes", "65536"],
  });
  await t.step("pipelined requests are answered in order on one connection", async () => {
    const c = await raw(lite.port, cluster, ["GET", "GET", "HEAD", "GET"], cluster.kubelet);
    const paths = [
      "/api/v1/nodes/edge-1",
      "/version",
      "/api/v1/namespaces/default/pods",
      "/api/v1/namespaces/default/configmaps",
    ];
    c.send(
      `GET ${paths[0]} HTTP/1.1\r\nHost: x\r\n\r\nGET ${paths[1]} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `HEAD ${paths[2]} HTTP/1.1\r\nHost: x\r\n\r\nGET ${paths[3]} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    const rs = await c.responses(4);
    assertEquals(rs.map((r) => r.status), [200, 200, 200, 200]);
    assertEquals(JSON.parse(rs[0].body).metadata.name, "edge-1");
    assert(JSON.parse(rs[1].body).gitVersion, "the /version answer second");
    assertEquals(rs[2].body, "", "HEAD has no body");
    assertEquals(JSON.parse(rs[3].body).kind, "ConfigMapList");
    assert(!c.isClosed(), "the connection stays open");
    c.socket.destroy();
  });

  await t.step("Expect: 100-continue gets a 100 when the body is read, then the answer", async () => {
    const c = await raw(lite.port, cluster, ["PUT", "POST"]);
    const body = JSON.stringify({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "expect-continue", namespace: "default" },
      data: { a: "b" },
    });
    c.send(
      `POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Authorization: Bearer admin-token\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    const [cont] = await c.responses(1);
    assertEquals(cont.status, 100);
    c.send(body);
    const rs = await c.responses(2);
    assertEquals(rs[1].status, 201, rs[1].body);
    assertEquals(JSON.parse(rs[1].body).metadata.name, "expect-continue");
    c.socket.destroy();
  });

  await t.step(
    "a body over --max-request-body-bytes is refused with a 413 Status before it is read",
    async () => {
      const seen = cluster.apiserver.requests.length;
      const c = await raw(lite.port, cluster, ["POST"], cluster.kubelet);
      c.send(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          "Expect: 100-continue\r\nContent-Length: 10485760\r\n\r\n",
      );
      const [r] = await c.responses(1);
      assertEquals(r.status, 413);
      const status = JSON.parse(r.body);
      assertEquals([status.kind, status.code, status.reason], ["Status", 413, "RequestEntityTooLarge"]);
      assertEquals(r.headers.connection, "close");
      await c.closed;
      assertEquals(
        cluster.apiserver.requests.slice(seen).filter((x) => x.method === "POST").length,
        0,
        "nothing went upstream",
      );
    },
  );

  await t.step("a chunked body that grows over the limit is cut with a 413", async () => {
    // A caller allowed to create: the upstream waits for the whole body, so only the limit ends it.
    const c = await raw(lite.port, cluster, ["POST"]);
    c.send(
      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Authorization: Bearer admin-token\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    const chunk = "x".repeat(8192);
    for (let i = 0; i < 10 && !c.isClosed(); i++) c.send(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    const [r] = await c.responses(1);
    assertEquals(r.status, 413);
    assertEquals(JSON.parse(r.body).reason, "RequestEntityTooLarge");
    await c.closed;
  });

  await t.step("malformed and smuggling requests get a 400 and the connection closes", async () => {
    for (
      const bad of [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  folded\r\n\r\n",
        "GET / HTTP/1.1\nHost: x\n\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
      ]
    ) {
      const c = await raw(lite.port, cluster, ["GET"]);
      c.send(bad);
      const [r] = await c.responses(1);
      assertEquals(r.status, 400, JSON.stringify(bad));
      assertEquals(JSON.parse(r.body).kind, "Status");
      await c.closed;
    }
  });

  await t.step("a client sending its head one byte at a time is cut after the header timeout", async () => {
    // The second request of a keep-alive connection: the header timeout runs per request.
    const c = await raw(lite.port, cluster, ["GET", "GET"]);
    c.send("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
    assertEquals((await c.responses(1))[0].status, 200);
    const head = "GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(10_000);
    const t0 = performance.now();
    let i = 0;
    // One byte every 50 ms: the head would take over 8 minutes; the timeout is 1 s.
    const drip = setInterval(() => !c.isClosed() && c.send(head[i++ % head.length]), 50);
    try {
      const [, r] = await c.responses(2, 15_000);
      assertEquals(r?.status, 408, "a 408 answer");
      await c.closed;
      const ms = performance.now() - t0;
      assert(ms >= 900, `cut after ${ms} ms, not before the timeout`);
    } finally {
      clearInterval(drip);
    }
  });

  await t.step(
    "a keep-alive connection idle between requests is not cut by the header timeout",
    async () => {
      const c = await raw(lite.port, cluster, ["GET", "GET"], cluster.kubelet);
      c.send("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
      await c.responses(1);
      // Idle for longer than the header timeout (1 s): a later request still gets its answer. The
      // condition: a witness connection opened after this one went idle, with half a head sent, is
      // cut by the header timeout (408); by then this one has been idle longer than that timeout.
      const witness = await raw(lite.port, cluster, ["GET"], cluster.kubelet);
      witness.send("GET /version HTTP/1.1\r\n");
      const [cut] = await witness.responses(1, 15_000);
      assertEquals(cut?.status, 408, "the witness's half head is cut by the header timeout");
      await witness.closed;
      assert(!c.isClosed(), "an idle keep-alive connection is kept (idle timeout 120 s)");
      c.send("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
      const rs = await c.responses(2);
      assertEquals(rs.map((r) => r.status), [200, 200]);
      c.socket.destroy();
    },
  );
});

Deno.test("connections beyond --max-connections get a 503 Status and are closed", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, { extra: ["--max-connections", "4"] });
  const open: Raw[] = [];
  try {
    // Hold the cap's worth of connections, each proven served by one request.
    for (let i = 0; i < 4; i++) {
      const c = await raw(lite.port, cluster, ["GET", "GET"], cluster.kubelet);
      c.send("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
      const [r] = await c.responses(1);
      assertEquals(r.status, 200, `connection ${i + 1} is served`);
      open.push(c);
    }
    const extra = await raw(lite.port, cluster, ["GET"], cluster.kubelet);
    const [r] = await extra.responses(1);
    assertEquals(r.status, 503);
    assertEquals(JSON.parse(r.body).reason, "ServiceUnavailable");
    await extra.closed;
    await lite.waitForLine(/connection refused: too many open connections/, 10_000);
    // A connection that closes frees its place.
    open.pop()!.socket.destroy();
    let served = false;
    for (let attempt = 0; attempt < 50 && !served; attempt++) {
      const again = await raw(lite.port, cluster, ["GET"], cluster.kubelet);
      again.send("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
      const [a] = await again.responses(1);
      served = a?.status === 200;
      if (served) open.push(again);
      else await again.closed;
    }
    assert(served, "a place freed by a closed connection is taken by a new one");
  } finally {
    for (const c of open) c.socket.destroy();
  }
});
