/**
 * End to end, the listener's bounds (issue 18) against the real process, with raw TLS and TCP
 * sockets as the hostile peers and kubelet's identity as the legitimate client: a pipelining flood
 * is cut after --max-pipelined-requests (the upstream sees at most that many), a body sent on
 * after its 413 is cut, trickled bodies get their 408, the request-body budget answers 503, TCP
 * connections that never start TLS hold a seat and are closed, kubelet is served while anonymous
 * connections hold the cap, and the accept loop recovers from running out of files.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import tls from "node:tls";
import { type Cluster, eventually, startCluster, startLite, within } from "./support/harness.ts";
import type { CertPair } from "./support/pki.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One request on a new TLS connection; resolves with the status line's code (0: no answer in 5 s). */
function oneRequest(port: number, cluster: Cluster, path: string, pair?: CertPair): Promise<number> {
  return new Promise((resolve) => {
    let text = "";
    const timer = setTimeout(() => s.destroy(), 5000);
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      ca: cluster.pki.caPem,
      ...(pair ? { cert: pair.certPem, key: pair.keyPem } : {}),
    }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    s.on("data", (d: Uint8Array) => {
      text += dec.decode(d);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m) {
        resolve(Number(m[1]));
        s.destroy();
      }
    });
    s.on("error", () => resolve(0));
    s.on("close", () => {
      clearTimeout(timer);
      resolve(0);
    });
  });
}

/** A TLS connection that has finished its handshake (anonymous unless `pair`). */
function connectTls(
  port: number,
  cluster: Cluster,
  pair?: CertPair,
  opts: { allowHalfOpen?: boolean } = {},
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      ca: cluster.pki.caPem,
      ...(pair ? { cert: pair.certPem, key: pair.keyPem } : {}),
      ...opts,
    }, () => resolve(s));
    s.once("error", reject);
  });
}

function closedOf(s: tls.TLSSocket): Promise<void> {
  return new Promise((r) => {
    if (s.destroyed) return r();
    s.on("error", () => {});
    s.once("close", () => r());
  });
}

/** Reads a TLS socket until the status line of the first answer arrives or it closes. */
function firstStatus(s: tls.TLSSocket): Promise<{ status: number; head: string }> {
  return new Promise((resolve) => {
    let text = "";
    s.on("data", (d: Uint8Array) => {
      text += dec.decode(d);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) resolve({ status: Number(text.slice(9, 12)), head: text.slice(0, end) });
    });
    s.on("error", () => {});
    s.on("close", () => resolve({ status: 0, head: text }));
  });
}

Deno.test("listener bounds", async (t) => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, {
    extra: [
      "--max-pipelined-requests",
      "8",
      "--request-body-idle-timeout",
      "1s",
      "--request-body-timeout",
      "3s",
      "--max-request-body-bytes",
      String(1 << 20),
      "--tls-handshake-timeout",
      "1s",
    ],
  });
  await t.step(
    "a pipelining client that never reads is cut: the upstream sees at most N requests",
    async () => {
      const marker = `pipeline-${crypto.randomUUID()}`;
      const s = await connectTls(lite.port, cluster);
      const closed = closedOf(s);
      const pad = "p".repeat(900);
      const req =
        `GET /api/v1/namespaces/default/configmaps/${marker} HTTP/1.1\r\nHost: x\r\nX-Pad: ${pad}\r\n\r\n`;
      const batch = enc.encode(req.repeat(16));
      // Write 16 requests at a time while the socket takes them (up to 4,000 requests), reading
      // nothing until the writes stop (the server stopped taking them, or all were taken).
      s.pause();
      let batches = 0;
      const writesDone = Promise.withResolvers<void>();
      const pump = () => {
        while (!s.destroyed && batches < 250) {
          batches++;
          if (!s.write(batch)) {
            // The server stopped reading: give it a moment to take more, else the writes are over.
            const stalled = setTimeout(() => writesDone.resolve(), 2000);
            return void s.once("drain", () => {
              clearTimeout(stalled);
              pump();
            });
          }
        }
        writesDone.resolve();
      };
      pump();
      await within(Promise.race([closed, writesDone.promise]), "the pipelined writes ending", 30_000);
      // Now read: the answers that were sent, then the end of a connection the server closed.
      s.resume();
      const count = () => cluster.apiserver.requests.filter((r) => r.path.includes(marker)).length;
      await within(closed, "the server closing the pipelining connection", 20_000).catch((e) => {
        throw new Error(`${e.message}; upstream saw ${count()}; wrote ${batches} batches`);
      });
      const seen = cluster.apiserver.requests.filter((r) => r.path.includes(marker)).length;
      assert(seen >= 1, "the first requests were served");
      assert(seen <= 9, `the upstream saw ${seen} requests, at most 1 + --max-pipelined-requests (8)`);
    },
  );

  await t.step(
    "a body sent on after its 413 is cut after a bounded drop, not read for seconds",
    async () => {
      // A hostile client: it does not end its side when ours ends, it writes on.
      const s = await connectTls(lite.port, cluster, undefined, { allowHalfOpen: true });
      const closed = closedOf(s);
      const answer = firstStatus(s);
      s.write(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          `Content-Length: ${200 << 20}\r\n\r\n`,
      );
      const piece = new Uint8Array(256 << 10).fill(97);
      let written = 0;
      const pump = () => {
        while (!s.destroyed && written < 200 << 20) {
          written += piece.length;
          if (!s.write(piece)) return void s.once("drain", pump);
        }
      };
      pump();
      // The client writes on until it is cut (or has written its 200 MiB).
      const allWritten = eventually(() => written >= 200 << 20, "all written", 60_000, 100);
      await within(
        Promise.race([closed, allWritten]),
        "the server cutting a client that writes on after its 413",
        20_000,
      );
      s.destroy();
      assert(
        written < 16 << 20,
        `the client could write ${written >> 20} MiB after the 413 (bound: 256 KiB + buffers)`,
      );
      const { status } = await answer;
      // The 413 went out first; a client that reads it sees it (a reset may hide it from one that does not).
      assert(status === 413 || status === 0, `status ${status}`);
    },
  );

  await t.step("a body that stops coming gets a 408 after --request-body-idle-timeout", async () => {
    const s = await connectTls(lite.port, cluster, cluster.kubelet);
    const closed = closedOf(s);
    const answer = firstStatus(s);
    s.write(
      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        'Content-Length: 100\r\n\r\n{"kind":',
    );
    const { status } = await within(answer, "the answer to a stalled body", 15_000);
    assertEquals(status, 408);
    await within(closed, "the connection closed after the 408", 10_000);
  });

  await t.step("a body trickled byte by byte gets a 408 after --request-body-timeout", async () => {
    const s = await connectTls(lite.port, cluster, cluster.kubelet);
    const closed = closedOf(s);
    const answer = firstStatus(s);
    s.write(
      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Content-Length: 1000\r\n\r\n",
    );
    // One byte every 300 ms: never idle for the 1 s idle bound, never done either.
    const timer = setInterval(() => s.destroyed || s.write("x"), 300);
    try {
      const { status, head } = await within(answer, "the answer to a trickled body", 20_000);
      assertEquals(status, 408, head);
      await within(closed, "the connection closed after the 408", 10_000);
    } finally {
      clearInterval(timer);
    }
  });

  await t.step(
    "a TCP connection that never starts TLS is closed after --tls-handshake-timeout",
    async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: lite.port });
      try {
        const n = await within(
          conn.read(new Uint8Array(16)).catch(() => null),
          "the server closing a silent TCP connection",
          10_000,
        );
        assertEquals(n, null, "closed without a byte");
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    },
  );
});

Deno.test("request bodies held in memory are bounded by --request-body-buffer-bytes: beyond, 503", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, {
    extra: ["--request-body-buffer-bytes", String(3 << 20), "--max-request-body-bytes", String(64 << 20)],
  });
  await cluster.apiserver.setFault("blackhole");
  // Four chunked bodies of 2 MiB each to a cloud that reads nothing: they cannot all be held.
  const answers: { status: number; head: string }[] = [];
  const sockets: tls.TLSSocket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = await connectTls(lite.port, cluster, cluster.kubelet);
    sockets.push(s);
    firstStatus(s).then((a) => answers.push(a));
    s.write(
      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n",
    );
    const piece = new Uint8Array(256 << 10).fill(97);
    const chunk = new Uint8Array([...enc.encode("40000\r\n"), ...piece, ...enc.encode("\r\n")]);
    let sent = 0;
    const pump = () => {
      while (!s.destroyed && sent < 8) {
        sent++;
        if (!s.write(chunk)) return void s.once("drain", pump);
      }
    };
    pump();
  }
  try {
    // The first body fits (the cloud holds it unanswered); the later ones take the total over.
    const refused = await eventually(
      () => answers.find((a) => a.status === 503),
      "a 503 for a body over the budget",
      20_000,
    );
    assert(/retry-after: 1/i.test(refused.head), refused.head);
    assert(/connection: close/i.test(refused.head), refused.head);
    await lite.waitForLine(/memory budget/, 5_000);
  } finally {
    for (const s of sockets) s.destroy();
  }

  // A Content-Length body nobody reads stops being read from the network (the TLS socket's TCP
  // reads stop, not just its 'data' events): the client's writes stall after a few MiB.
  const s = await connectTls(lite.port, cluster, cluster.kubelet);
  try {
    s.on("error", () => {});
    s.write(
      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${48 << 20}\r\n\r\n`,
    );
    const piece = new Uint8Array(64 << 10).fill(97);
    let written = 0;
    let lastDrain = performance.now();
    const pump = () => {
      lastDrain = performance.now();
      while (!s.destroyed && written < 48 << 20) {
        written += piece.length;
        if (!s.write(piece)) return void s.once("drain", pump);
      }
    };
    pump();
    // Wait until the writes stall for a second (or all 48 MiB went: the bound failed).
    await eventually(
      () => written >= 48 << 20 || performance.now() - lastDrain > 1000,
      "the writes stalling",
      20_000,
    );
    // Kernel socket buffers on loopback take several MiB; the rest must wait.
    assert(written < 24 << 20, `the client wrote ${written >> 20} MiB of a body nobody reads`);
  } finally {
    s.destroy();
  }
});

Deno.test("seats: raw TCP connections count, anonymous ones give way, kubelet is served under a flood", async (t) => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, {
    extra: ["--max-connections", "20", "--max-anonymous-connections", "12", "--tls-handshake-timeout", "60s"],
  });
  await t.step(
    "TCP connections that never start TLS hold seats: beyond the cap the oldest are closed",
    async () => {
      const conns = await Promise.all(
        Array.from({ length: 30 }, () => Deno.connect({ hostname: "127.0.0.1", port: lite.port })),
      );
      try {
        // The handshake timeout is 60 s: only the seat limit (--max-connections 20) closes them now.
        const closedFlags = conns.map(() => false);
        conns.forEach((c, i) =>
          c.read(new Uint8Array(1)).then(() => closedFlags[i] = true, () => closedFlags[i] = true)
        );
        await eventually(
          () => closedFlags.filter(Boolean).length >= 10,
          "10 of 30 raw connections closed",
          15_000,
        );
        // Kubelet is served while they are held.
        assertEquals(
          await oneRequest(lite.port, cluster, "/api/v1/namespaces/default/pods", cluster.kubelet),
          200,
        );
      } finally {
        for (const c of conns) {
          try {
            c.close();
          } catch { /* closed */ }
        }
      }
    },
  );

  await t.step(
    "anonymous slowloris connections hold the cap: kubelet is answered on every try",
    async () => {
      const flood: tls.TLSSocket[] = [];
      let stopped = false;
      let closedByServer = 0;
      // 30 anonymous connections that send half a head and wait; each one cut comes back at once.
      const attacker = () => {
        if (stopped) return;
        const s = tls.connect({ host: "127.0.0.1", port: lite.port, ca: cluster.pki.caPem });
        s.on("error", () => {});
        s.once("secureConnect", () => s.write("GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n"));
        s.once("close", () => {
          if (stopped) return;
          closedByServer++;
          setTimeout(attacker, 5);
        });
        flood.push(s);
      };
      try {
        for (let i = 0; i < 30; i++) attacker();
        await eventually(() => closedByServer >= 18, "the flood holding the anonymous seats", 15_000);
        const statuses: number[] = [];
        for (let i = 0; i < 10; i++) {
          statuses.push(
            await oneRequest(lite.port, cluster, "/api/v1/namespaces/default/pods", cluster.kubelet),
          );
        }
        assertEquals(statuses, Array(10).fill(200));
        await lite.waitForLine(/connections closed to make room/, 10_000);
      } finally {
        stopped = true;
        for (const s of flood) s.destroy();
      }
    },
  );

  await t.step(
    "a connection whose token the cloud accepted is kept while anonymous ones churn",
    async () => {
      // No client certificate: anonymous at the TLS layer, proven by its first answered request.
      const tok = await connectTls(lite.port, cluster);
      const tokClosed = closedOf(tok);
      let text = "";
      tok.on("data", (d: Uint8Array) => (text += dec.decode(d)));
      const get =
        "GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n\r\n";
      tok.write(get);
      await eventually(() => /^HTTP\/1\.1 200/.test(text), "the token's first answer", 15_000);
      const flood: tls.TLSSocket[] = [];
      let closedByServer = 0;
      try {
        // Idle now, it would be the first anonymous connection to go.
        for (let i = 0; i < 40; i++) {
          const s = tls.connect({ host: "127.0.0.1", port: lite.port, ca: cluster.pki.caPem });
          s.on("error", () => {});
          s.once("close", () => closedByServer++);
          flood.push(s);
        }
        await eventually(() => closedByServer >= 20, "anonymous connections closed to make room", 15_000);
        assert(!tok.destroyed && !tok.closed, "the token's connection is still open");
        text = "";
        tok.write(get);
        await eventually(() => /^HTTP\/1\.1 200/.test(text), "the token's second answer", 15_000);
      } finally {
        for (const s of flood) s.destroy();
        tok.destroy();
        await tokClosed;
      }
    },
  );
});

Deno.test("the accept loop recovers after the process ran out of files", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, {
    extra: ["--tls-handshake-timeout", "60s"],
    launcher: { cmd: "prlimit", args: ["--nofile=160:160", Deno.execPath(), "run", "-A", "--quiet"] },
  });
  const conns: Deno.Conn[] = [];
  try {
    assertEquals(
      await oneRequest(lite.port, cluster, "/api/v1/namespaces/default/pods", cluster.kubelet),
      200,
    );
    // A flood of TCP connections that never start TLS, more than the process has files for.
    for (let i = 0; i < 300; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port: lite.port }));
    await lite.waitForLine(/out of file descriptors/, 15_000);
    for (const c of conns.splice(0)) c.close();
    // Within a second or so of the flood ending, the listener serves again.
    const status = await eventually(
      async () =>
        (await oneRequest(lite.port, cluster, "/api/v1/namespaces/default/pods", cluster.kubelet)) === 200,
      "kubelet served again after the flood",
      10_000,
      100,
    );
    assert(status);
  } finally {
    for (const c of conns) c.close();
  }
});
