/**
 * A client that stops reading its answer while the cloud streams fast (issue 18): lite-apiserver
 * must not buffer without bound. A watch is ended the kube-apiserver's way (after its last whole
 * event; the client re-watches from its last resourceVersion and gets the later events), by its
 * byte bound or by its time budget; a large list is cut and its connection closed. The clients are
 * raw `Deno.connectTls` sockets, which (unlike Deno's node:tls) stop reading when not read.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  type Cluster,
  eventually,
  type LiteProcess,
  startCluster,
  startLite,
  within,
} from "./support/harness.ts";
import { startStreamUpstream, type StreamUpstream } from "./support/stream_upstream.ts";
import { MessageReader } from "../lib/http/message_reader.ts";
import type { ResponseHead } from "../lib/http/head_parser.ts";

const WATCH = "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=";
const dec = new TextDecoder();

async function setUp(
  upstreamOpts: { paceMs?: number; maxEvents?: number; listBytes?: number },
  extra: string[],
): Promise<{ cluster: Cluster; up: StreamUpstream; lite: LiteProcess; close(): Promise<void> }> {
  const cluster = await startCluster();
  const pair = await cluster.pki.server("stream-cloud");
  const up = startStreamUpstream({ certPem: pair.certPem, keyPem: pair.keyPem, ...upstreamOpts });
  const lite = await startLite(cluster, { upstream: up.url, extra });
  return {
    cluster,
    up,
    lite,
    async close() {
      await lite.kill();
      await up.close();
      await cluster.close();
    },
  };
}

/** A kubelet connection that sends one GET and reads nothing until told to. */
async function stuckGet(cluster: Cluster, port: number, path: string): Promise<Deno.TlsConn> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [cluster.pki.caPem],
    cert: cluster.kubelet.certPem,
    key: cluster.kubelet.keyPem,
  });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
  return conn;
}

/** Reads the answer: until it is complete (`whole`), or the connection ends first. */
async function readAnswer(
  conn: Deno.TlsConn,
  what: string,
): Promise<{ whole: boolean; body: Uint8Array; bytes: number }> {
  const reader = new MessageReader<ResponseHead>("response", undefined, ["GET"]);
  const buf = new Uint8Array(256 << 10);
  let bytes = 0;
  let body = new Uint8Array();
  await within(
    (async () => {
      for (;;) {
        let n: number | null;
        try {
          n = await conn.read(buf);
        } catch {
          n = null;
        }
        if (n === null) return;
        bytes += n;
        reader.push(buf.subarray(0, n));
        if (reader.messages.length) return void (body = reader.messages[0].body as Uint8Array<ArrayBuffer>);
      }
    })(),
    what,
    60_000,
  );
  return { whole: reader.messages.length > 0, body, bytes };
}

/** resourceVersions of the whole events in a JSON watch body (each line must be a whole event). */
function eventVersions(body: Uint8Array): number[] {
  const text = dec.decode(body);
  assert(text === "" || text.endsWith("\n"), "the watch ends after a whole event");
  return text.split("\n").filter((l) => l).map((l) => Number(JSON.parse(l).object.metadata.resourceVersion));
}

async function slowReaders(adminUrl: string, kind: string, reason: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const re = new RegExp(
    `^lite_apiserver_slow_readers_total\\{kind="${kind}",reason="${reason}"\\} (\\d+)`,
    "m",
  );
  return Number(re.exec(text)?.[1] ?? "0");
}

/** A new watch from `rv`: its first event must be the next one. */
async function rewatch(cluster: Cluster, lite: LiteProcess, rv: number): Promise<number> {
  const conn = await stuckGet(cluster, lite.port, WATCH + rv);
  try {
    const buf = new Uint8Array(256 << 10);
    let text = "";
    await within(
      (async () => {
        while (!/"resourceVersion":"\d+"/.test(text)) {
          const n = await conn.read(buf);
          if (n === null) throw new Error(`the re-watch ended early: ${text.slice(0, 300)}`);
          text += dec.decode(buf.subarray(0, n));
        }
      })(),
      `the first event of the re-watch from ${rv}`,
    );
    return Number(/"resourceVersion":"(\d+)"/.exec(text)![1]);
  } finally {
    conn.close();
  }
}

Deno.test("a watch whose client stops reading is ended at its byte bound, whole, and resumes from its last event", async () => {
  const env = await setUp({}, ["--watch-buffer-bytes", String(1 << 20)]);
  const { cluster, up, lite } = env;
  try {
    const conn = await stuckGet(cluster, lite.port, WATCH + "100");
    // The cloud streams 4000 events of 64 KiB (256 MiB); the proxy must close it long before.
    await eventually(
      () => up.records.some((r) => r.kind === "watch" && r.closedEarly),
      "the proxy to close the cloud's watch of a client that stopped reading",
      60_000,
    );
    const watch = up.records.find((r) => r.kind === "watch")!;
    assert(watch.sent < 4000, `the cloud sent ${watch.sent} events`);
    assertEquals(await slowReaders(lite.adminUrl!, "watch", "bytes"), 1);
    await lite.waitForLine(/client cannot keep up with its watch: watch ended/);

    // The client reads again: the watch ended cleanly (the chunked answer is complete), after whole events.
    const answer = await readAnswer(conn, "the rest of the ended watch");
    conn.close();
    assert(answer.whole, "the watch's answer ended cleanly, not cut");
    const rvs = eventVersions(answer.body);
    assert(rvs.length > 0, "events were relayed before the end");
    assertEquals(rvs, rvs.map((_, i) => 101 + i), "consecutive events, none missing");
    const last = rvs[rvs.length - 1];
    assertEquals(await rewatch(cluster, lite, last), last + 1);
    assert(up.records.some((r) => r.kind === "watch" && r.fromRv === last), "the re-watch reached the cloud");
  } finally {
    await env.close();
  }
});

Deno.test("a watch whose client takes nothing for the slow-reader timeout is ended, and resumes", async () => {
  // A steady cloud (about 3 MB/s), a bound the watch never meets: the time budget ends it.
  const env = await setUp({ paceMs: 20 }, [
    "--watch-buffer-bytes",
    String(1 << 30),
    "--slow-reader-timeout",
    "1s",
  ]);
  const { cluster, up, lite } = env;
  try {
    const conn = await stuckGet(cluster, lite.port, WATCH + "500");
    await eventually(
      () => up.records.some((r) => r.kind === "watch" && r.closedEarly),
      "the proxy to close the cloud's watch of a client that took nothing for 1s",
      60_000,
    );
    assertEquals(await slowReaders(lite.adminUrl!, "watch", "time"), 1);
    assertEquals(await slowReaders(lite.adminUrl!, "watch", "bytes"), 0);
    // Whether the client still got the clean end or its connection was closed after one more budget,
    // what it got is whole events in order, and it carries on from the last one.
    const answer = await readAnswer(conn, "the rest of the ended watch");
    conn.close();
    const rvs = answer.whole ? eventVersions(answer.body) : [];
    assertEquals(rvs, rvs.map((_, i) => 501 + i));
    const last = rvs.length ? rvs[rvs.length - 1] : 500;
    assertEquals(await rewatch(cluster, lite, last), last + 1);
  } finally {
    await env.close();
  }
});

Deno.test("a large list whose client stops reading holds the cloud back, then is cut by the time budget", async () => {
  const env = await setUp({}, ["--slow-reader-timeout", "2s"]);
  const { cluster, up, lite } = env;
  try {
    const conn = await stuckGet(cluster, lite.port, "/api/v1/namespaces/default/configmaps");
    await eventually(
      async () => await slowReaders(lite.adminUrl!, "answer", "time") === 1,
      "the proxy to give up on a client that took nothing of its 256 MiB list for 2s",
      60_000,
    );
    const list = up.records.find((r) => r.kind === "list")!;
    // Real backpressure: the cloud could send only what the sockets' buffers hold (loopback TCP
    // buffers grow to several MiB on each side) and the relay's 64 KiB, not the 256 MiB list.
    assert(list.sent < 32 << 20, `the cloud sent ${list.sent} bytes to a client that read nothing`);
    assertEquals(await slowReaders(lite.adminUrl!, "answer", "bytes"), 0, "never past the byte bound");
    await eventually(() => list.closedEarly, "the proxy to close the cloud's list", 30_000);
    const answer = await readAnswer(conn, "the rest of the cut list");
    conn.close();
    assert(!answer.whole, "a cut answer must never look whole");
  } finally {
    await env.close();
  }
});

Deno.test("a client that reads slowly but steadily gets its whole answer: the time budget counts progress", async () => {
  // 32 MiB read at about 4 MB/s (8 s or more) with a 4 s budget: blocked for most of the time, never
  // for 4 s without progress. (TCP takes nothing for a while when a full receive buffer is read
  // slowly: a budget of a second or less would cut such a client.)
  // The default byte bound (8 MiB): the cloud is held back while the client reads slowly.
  const size = 32 << 20;
  const env = await setUp({ listBytes: size }, ["--slow-reader-timeout", "4s"]);
  const { cluster, lite } = env;
  try {
    const conn = await stuckGet(cluster, lite.port, "/api/v1/namespaces/default/configmaps");
    const reader = new MessageReader<ResponseHead>("response", undefined, ["GET"]);
    const buf = new Uint8Array(64 << 10);
    let reads = 0;
    await within(
      (async () => {
        while (!reader.messages.length) {
          const n = await conn.read(buf);
          if (n === null) throw new Error("the connection was closed mid-answer");
          reader.push(buf.subarray(0, n));
          // The client's own pace (a read returns at most one 16 KiB TLS record).
          if (++reads % 4 === 0) await new Promise((r) => setTimeout(r, 15));
        }
      })(),
      "the whole list, read slowly",
      120_000,
    );
    conn.close();
    assertEquals(reader.messages[0].body.byteLength, size);
    assertEquals(await slowReaders(lite.adminUrl!, "answer", "time"), 0);
    assertEquals(await slowReaders(lite.adminUrl!, "answer", "bytes"), 0);
  } finally {
    await env.close();
  }
});
