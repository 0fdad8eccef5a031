/**
 * HTTP/2 for the node's clients (issue 21 part 2): with `--http2 on` the listener offers h2 by
 * ALPN; kubectl, curl and one client with many watches use one connection each, every stream
 * served through the same handler as HTTP/1.1. Hostile clients are bounded: rapid reset and
 * CONTINUATION floods end their connection with GOAWAY; watches on streams whose window is never
 * granted are ended by the relay's slow-reader budget. HTTP/1.1 clients are still served, and
 * `--http2 off` offers only HTTP/1.1.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  commandOutput,
  eventually,
  kubectl,
  type LiteProcess,
  startCluster,
  startLite,
  within,
  writeKubeconfig,
} from "./support/harness.ts";
import { startStreamUpstream } from "./support/stream_upstream.ts";
import {
  CLIENT_PREFACE,
  encodeFrame,
  encodeRst,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  parseGoaway,
  Setting,
} from "../lib/http2/frame.ts";
import { type HeaderField, HpackEncoder } from "../lib/http2/hpack.ts";

const H2_ON = ["--http2", "on", "--log-level", "debug"];

/** Connections lite accepted with each protocol, from its debug log, since line `from`. */
function connections(lite: LiteProcess, from = 0): { h2: number; h1: number } {
  let h2 = 0, h1 = 0;
  for (const l of lite.lines.slice(from)) {
    if (!/\bconnection\b/.test(l) || !/protocol/.test(l)) continue;
    if (/protocol[=:"\s]+h2/.test(l)) h2++;
    else if (/http\/1\.1/.test(l)) h1++;
  }
  return { h2, h1 };
}

async function curl(args: string[]): Promise<{ version: string; status: string; body: string }> {
  const out = await commandOutput("curl", {
    args: ["-sS", "--max-time", "20", "-w", "\n%{http_version} %{http_code}", ...args],
    stdout: "piped",
    stderr: "piped",
  }, `curl ${args.join(" ")}`);
  const text = new TextDecoder().decode(out.stdout);
  const nl = text.lastIndexOf("\n");
  const [version, status] = text.slice(nl + 1).split(" ");
  return { version, status, body: text.slice(0, nl) };
}

/** A raw h2 client over TLS (kubelet's certificate) that sends what a test scripts. */
async function rawH2(
  lite: LiteProcess,
  pki: { caPem: string },
  pair: { certPem: string; keyPem: string },
  /** false: never read the socket (Deno.connectTls then stops taking bytes from the kernel). */
  read = true,
) {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: lite.port,
    caCerts: [pki.caPem],
    cert: pair.certPem,
    key: pair.keyPem,
    alpnProtocols: ["h2"],
  });
  const hs = await conn.handshake();
  assertEquals(hs.alpnProtocol, "h2");
  const frames: Frame[] = [];
  let ended = false;
  const reader = new FrameReader(1 << 24, (f) => frames.push({ ...f, payload: f.payload.slice() }));
  const reading = (async () => {
    if (!read) return;
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        reader.feed(buf.subarray(0, n));
      }
    } catch { /* reset: ended too */ }
    ended = true;
  })();
  const encoder = new HpackEncoder();
  const write = async (b: Uint8Array) => {
    try {
      await conn.write(b);
    } catch { /* the server closed: the test looks at what it got */ }
  };
  return {
    frames,
    get ended() {
      return ended;
    },
    write,
    headers: (id: number, fields: HeaderField[], flags: number = Flag.END_HEADERS | Flag.END_STREAM) =>
      encodeFrame(FrameType.HEADERS, flags, id, encoder.encode(fields)),
    goaway: () => {
      const g = frames.find((f) => f.type === FrameType.GOAWAY);
      return g ? parseGoaway(g) : undefined;
    },
    close: async () => {
      try {
        conn.close();
      } catch { /* closed already */ }
      await reading;
    },
  };
}

const GET = (path: string): HeaderField[] => [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", path],
  [":authority", "127.0.0.1"],
];

Deno.test("h2 by ALPN: curl gets HTTP/2 when it asks, HTTP/1.1 when it does not; --http2 off offers only HTTP/1.1", async () => {
  await using cluster = await startCluster();
  const tls = ["--cacert", cluster.pki.caCert, "--cert", cluster.kubelet.cert, "--key", cluster.kubelet.key];
  {
    await using lite = await startLite(cluster, { extra: H2_ON });
    const h2 = await curl([...tls, "--http2", `${lite.url}/api/v1/namespaces/default/pods`]);
    assertEquals([h2.version, h2.status], ["2", "200"]);
    assertEquals(JSON.parse(h2.body).kind, "PodList");
    const h1 = await curl([...tls, "--http1.1", `${lite.url}/api/v1/namespaces/default/pods`]);
    assertEquals([h1.version, h1.status], ["1.1", "200"]);
    assertEquals(h1.body, h2.body);
    // A token on a stream is that stream's identity, as on HTTP/1.1: a bad one is refused.
    const bad = await curl([
      "--cacert",
      cluster.pki.caCert,
      "--http2",
      "-H",
      "Authorization: Bearer not-a-token",
      `${lite.url}/api/v1/namespaces/default/pods`,
    ]);
    assertEquals([bad.version, bad.status], ["2", "401"]);
  }
  {
    await using lite = await startLite(cluster, { extra: ["--http2", "off"] });
    const r = await curl([...tls, "--http2", `${lite.url}/api/v1/namespaces/default/pods`]);
    assertEquals([r.version, r.status], ["1.1", "200"]);
  }
});

for (const version of ["1.33", "1.27"]) {
  Deno.test(`kubectl ${version} negotiates h2 and uses one connection per process`, async () => {
    await using cluster = await startCluster();
    await using lite = await startLite(cluster, { extra: H2_ON });
    const kc = await writeKubeconfig(
      cluster.dir,
      `h2-${version}`,
      lite.url,
      cluster.pki.caCert,
      cluster.kubelet,
    );
    const from = lite.lines.length;
    const r = await kubectl(version, kc, ["get", "pods", "-A", "-o", "name"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes("pod/"), r.stdout);
    const c = connections(lite, from);
    console.log(`kubectl ${version} get pods: ${c.h2} h2 + ${c.h1} HTTP/1.1 connections`);
    assertEquals(c, { h2: 1, h1: 0 });
  });
}

Deno.test("50 watches from one h2 client share one connection, and each gets its events", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, { extra: H2_ON });
  const client = Deno.createHttpClient({
    caCerts: [cluster.pki.caPem],
    cert: cluster.kubelet.certPem,
    key: cluster.kubelet.keyPem,
    http1: false,
    http2: true,
  });
  const from = lite.lines.length;
  const ctl = new AbortController();
  try {
    const n = 50;
    const readers = await Promise.all(Array.from({ length: n }, async (_, i) => {
      const res = await fetch(
        `${lite.url}/api/v1/namespaces/default/configmaps?watch=1&labelSelector=w%3D${i}`,
        { client, signal: ctl.signal },
      );
      assertEquals(res.status, 200);
      return res.body!.pipeThrough(new TextDecoderStream()).getReader();
    }));
    await eventually(
      () =>
        cluster.apiserver.requests.filter((r) => r.query.includes("watch=1") && r.status === 200).length >= n,
      `the apiserver answering ${n} watches`,
    );
    for (let i = 0; i < n; i++) {
      cluster.apiserver.create({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `cm-${i}`, namespace: "default", labels: { w: String(i) } },
        data: {},
      });
    }
    await Promise.all(readers.map(async (r, i) => {
      let text = "";
      while (!text.includes(`"cm-${i}"`)) {
        const { value, done } = await within(r.read(), `watch ${i}'s event`, 30_000);
        if (done) throw new Error(`watch ${i} ended early`);
        text += value;
      }
    }));
    const c = connections(lite, from);
    console.log(`${n} watches from one h2 client: ${c.h2} h2 + ${c.h1} HTTP/1.1 connections`);
    assertEquals(c, { h2: 1, h1: 0 });
  } finally {
    ctl.abort();
    client.close();
  }
});

Deno.test("rapid reset and CONTINUATION floods end the connection with GOAWAY; other clients are served", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, { extra: H2_ON });
  {
    const c = await rawH2(lite, cluster.pki, cluster.kubelet);
    await c.write(CLIENT_PREFACE);
    await c.write(encodeSettings([]));
    const before = cluster.apiserver.requests.length;
    for (let id = 1; id < 20_000 && !c.ended && !c.goaway(); id += 2) {
      const batch: Uint8Array[] = [];
      for (let k = 0; k < 50; k++, id += 2) {
        batch.push(c.headers(id, GET("/api/v1/namespaces/default/pods")), encodeRst(id, ErrorCode.CANCEL));
      }
      await c.write(concat(batch));
    }
    await eventually(() => c.ended, "lite closing the rapid-reset connection");
    assertEquals(c.goaway()?.code, ErrorCode.ENHANCE_YOUR_CALM);
    // The budget (200 resets) bounds what reached the cloud.
    assert(
      cluster.apiserver.requests.length - before <= 250,
      `${cluster.apiserver.requests.length - before}`,
    );
    await c.close();
  }
  {
    const c = await rawH2(lite, cluster.pki, cluster.kubelet);
    await c.write(CLIENT_PREFACE);
    await c.write(encodeSettings([]));
    await c.write(c.headers(1, GET("/api"), 0));
    for (let i = 0; i < 10_000 && !c.ended && !c.goaway(); i += 100) {
      const batch = Array.from({ length: 100 }, () => encodeFrame(FrameType.CONTINUATION, 0, 1));
      await c.write(concat(batch));
    }
    await eventually(() => c.ended, "lite closing the CONTINUATION-flood connection");
    assertEquals(c.goaway()?.code, ErrorCode.ENHANCE_YOUR_CALM);
    await c.close();
  }
  const tls = ["--cacert", cluster.pki.caCert, "--cert", cluster.kubelet.cert, "--key", cluster.kubelet.key];
  const ok = await curl([...tls, "--http2", `${lite.url}/api/v1/namespaces/default/pods`]);
  assertEquals([ok.version, ok.status], ["2", "200"]);
});

Deno.test("watches on streams whose window is never granted are ended by the slow-reader budget", async () => {
  await using cluster = await startCluster();
  const pair = await cluster.pki.server("stream-cloud");
  const up = startStreamUpstream({ certPem: pair.certPem, keyPem: pair.keyPem, paceMs: 20 });
  try {
    await using lite = await startLite(cluster, {
      upstream: up.url,
      extra: [...H2_ON, "--watch-buffer-bytes", String(1 << 30), "--slow-reader-timeout", "1s"],
    });
    const c = await rawH2(lite, cluster.pki, cluster.kubelet);
    await c.write(CLIENT_PREFACE);
    // No window at all for any stream, ever.
    await c.write(encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 0]]));
    const n = 5;
    for (let i = 0; i < n; i++) {
      await c.write(
        c.headers(1 + 2 * i, GET("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=500")),
      );
    }
    await eventually(
      () => up.records.filter((r) => r.kind === "watch" && r.closedEarly).length === n,
      `the proxy to end all ${n} cloud watches of streams that took nothing for 1s`,
      60_000,
    );
    // Each stream was ended for its client (RST_STREAM), the connection itself lives on.
    await eventually(
      () => new Set(c.frames.filter((f) => f.type === FrameType.RST_STREAM).map((f) => f.stream)).size === n,
      "a RST_STREAM for each stuck stream",
    );
    assert(!c.ended);
    assertEquals(
      c.frames.filter((f) => f.type === FrameType.DATA).reduce((s, f) => s + f.payload.byteLength, 0),
      0,
    );
    await c.close();
  } finally {
    await up.close();
  }
});

Deno.test("a client that grants every window but never reads its socket: the watch is ended by the slow-reader budget", async () => {
  await using cluster = await startCluster();
  const pair = await cluster.pki.server("stream-cloud");
  const up = startStreamUpstream({ certPem: pair.certPem, keyPem: pair.keyPem, paceMs: 20 });
  try {
    await using lite = await startLite(cluster, {
      upstream: up.url,
      extra: [...H2_ON, "--watch-buffer-bytes", String(1 << 30), "--slow-reader-timeout", "1s"],
    });
    const c = await rawH2(lite, cluster.pki, cluster.kubelet, false);
    await c.write(concat([
      CLIENT_PREFACE,
      encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 0x7fffffff], [Setting.MAX_FRAME_SIZE, 1 << 20]]),
      encodeWindowUpdate(0, 0x7fffffff - 65_535),
      c.headers(1, GET("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=500")),
    ]));
    // Only backpressure from the socket itself can stop lite: the windows never do.
    await eventually(
      () => up.records.some((r) => r.kind === "watch" && r.closedEarly),
      "the proxy to end the cloud watch of a client that reads nothing",
      60_000,
    );
    await c.close();
  } finally {
    await up.close();
  }
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
