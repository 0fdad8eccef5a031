/**
 * `deno task bench:attack`: every hostile-peer case of issue 18 against a real lite-apiserver (the
 * release V8 flags and the systemd unit's malloc settings, as `deno task bench` runs it), one fresh
 * process per case, in front of the simulated apiserver or, where the case needs an upstream that
 * misbehaves (floods a watch, sends an endless answer, never reads a body), a hostile one.
 *
 * For each case it prints: peak RSS (VmHWM), RSS 10 s after the attack ended (and, with gdb, after
 * glibc gave back the free memory it keeps: what of it was live), what kubelet (its
 * client certificate, a new connection per probe, every 250 ms during the attack) saw, whether the
 * listener answers a new connection within 1 s of the attack ending, and the most WARN/ERROR log
 * lines of one kind in any one second. Targets: peak <= 150 MB, <= 100 MB 10 s after, kubelet
 * answered, listener back within 1 s, <= 1 line/s per kind.
 *
 * Every case is bounded: ATTACK_MS of attack, fixed counts, loopback only.
 *
 *   ./scripts/deno task bench:attack [--case NAME[,NAME...]] [--list]
 *
 * A full run (no --case) also writes bench/results/attack-latest.{md,json}.
 */
import { type Cluster, type LiteLauncher, startCluster, startLite } from "../tests/support/harness.ts";
import type { CertPair } from "../tests/support/pki.ts";
import { PROBES, SHIPPED, UNIT_ENV } from "./run.ts";
import { type H2Mode, type HostileH2, startHostileH2 } from "../tests/support/hostile_h2.ts";

const ATTACK_MS = 15_000;
const AFTER_MS = 10_000;
const MB = 1 << 20;
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// A hostile upstream: Deno.listenTls (it reads only when asked, so "never reads" is real TCP
// backpressure), a minimal HTTP/1.1 loop, and paths that misbehave on purpose.

interface Hostile {
  url: string;
  /** Requests read so far, by path prefix. */
  requests: number;
  close(): Promise<void>;
}

const WATCH_EVENT = (() => {
  const data = "x".repeat(64 * 1024);
  return (rv: number) =>
    enc.encode(
      `{"type":"MODIFIED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big",` +
        `"namespace":"flood","resourceVersion":"${rv}"},"data":{"x":"${data}"}}}\n`,
    );
})();

function startHostile(pair: CertPair): Hostile {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pair.certPem, key: pair.keyPem });
  const conns = new Set<Deno.Conn>();
  const h: Hostile = {
    url: `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    requests: 0,
    async close() {
      listener.close();
      for (const c of conns) c.close();
      await accepting;
    },
  };
  const write = (c: Deno.Conn, b: Uint8Array | string) =>
    writeAll(c, typeof b === "string" ? enc.encode(b) : b);
  const json = (c: Deno.Conn, body: string) =>
    write(
      c,
      `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${
        enc.encode(body).length
      }\r\n\r\n${body}`,
    );

  const serve = async (c: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    let pending: Uint8Array = new Uint8Array(0);
    const more = async (): Promise<boolean> => {
      const n = await c.read(buf);
      if (n === null) return false;
      pending = concat(pending, buf.subarray(0, n));
      return true;
    };
    for (;;) {
      let end: number;
      while ((end = indexOf(pending, "\r\n\r\n")) < 0) {
        if (pending.length > 64 * 1024 || !await more()) return;
      }
      const head = dec.decode(pending.subarray(0, end));
      pending = pending.slice(end + 4);
      h.requests++;
      const [method, target] = head.split(" ");
      const path = target.split("?")[0];
      const watch = /[?&]watch=(1|true)/.test(target);
      if (path.startsWith("/api/v1/namespaces/stuck/")) {
        // Never reads the body, never answers: the client side's bytes stay in the kernel buffers.
        await new Promise(() => {});
      }
      const cl = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        // Read (and drop) to the last chunk: enough for what the proxy forwards here.
        while (indexOf(pending.subarray(Math.max(0, pending.length - 5)), "0\r\n\r\n") < 0) {
          if (pending.length > 16 * MB || !await more()) return;
        }
        pending = new Uint8Array(0);
      } else {
        while (pending.length < cl) if (!await more()) return;
        pending = pending.slice(cl);
      }
      if (watch && path === "/api/v1/namespaces/flood/configmaps") {
        // A watch whose objects change as fast as the reader takes them: 64 KiB per event.
        await write(
          c,
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for (let rv = 2;; rv++) {
          const ev = WATCH_EVENT(rv);
          await write(c, concat(enc.encode(`${ev.length.toString(16)}\r\n`), ev, enc.encode("\r\n")));
        }
      }
      if (method === "GET" && path === "/api/v1/namespaces/big/configmaps") {
        // A long answer (512 MiB), sent as fast as it is read.
        const chunk = enc.encode("x".repeat(MB));
        await write(
          c,
          `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${512 * MB}\r\n\r\n`,
        );
        for (let i = 0; i < 512; i++) await write(c, chunk);
        continue;
      }
      if (path === "/api/v1/nodes/edge-1") {
        await json(c, '{"kind":"Node","apiVersion":"v1","metadata":{"name":"edge-1","resourceVersion":"1"}}');
      } else if (/^\/api\/v1\/(namespaces\/[^/]+\/)?[a-z]+$/.test(path) && method === "GET") {
        await json(
          c,
          '{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}',
        );
      } else await json(c, '{"kind":"Status","apiVersion":"v1","status":"Success","code":200}');
    }
  };
  const accepting = (async () => {
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await listener.accept();
      } catch {
        return;
      }
      conns.add(c);
      serve(c).catch(() => {}).finally(() => {
        conns.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      });
    }
  })();
  return h;
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

function indexOf(b: Uint8Array, s: string): number {
  const n = enc.encode(s);
  outer: for (let i = 0; i + n.length <= b.length; i++) {
    for (let j = 0; j < n.length; j++) if (b[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let o = 0; o < b.length;) o += await c.write(b.subarray(o));
}

// ---------------------------------------------------------------------------------------------
// Clients.

/** What an attacker gets: plain data, so that it runs in a worker of its own. */
export interface Ctx {
  /** Epoch ms when the attack must have stopped (and closed its sockets). */
  until: number;
  port: number;
  caPem: string;
  rogue: CertPair;
  kubelet: CertPair;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to `p`'s value, or undefined after ms. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<undefined>((r) => t = setTimeout(() => r(undefined), ms))])
    .finally(() => clearTimeout(t));
}

function tlsConnect(ctx: Ctx, pair?: CertPair): Promise<Deno.TlsConn> {
  return Deno.connectTls({
    hostname: "127.0.0.1",
    port: ctx.port,
    caCerts: [ctx.caPem],
    ...(pair ? { cert: pair.certPem, key: pair.keyPem } : {}),
  });
}

/** Closes conns quietly. */
function closeAll(conns: Iterable<Deno.Conn>): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* already closed */ }
  }
}

/** Reads what is left until EOF for up to ms: "ended by the proxy" or "still open". */
async function endedByProxy(c: Deno.Conn, ms: number): Promise<{ ended: boolean; bytes: number }> {
  const buf = new Uint8Array(256 * 1024);
  const deadline = Date.now() + ms;
  let bytes = 0;
  try {
    while (Date.now() < deadline) {
      const n = await within(c.read(buf), deadline - Date.now());
      if (n === undefined) return { ended: false, bytes };
      if (n === null) return { ended: true, bytes };
      bytes += n;
    }
  } catch {
    return { ended: true, bytes };
  }
  return { ended: false, bytes };
}

/** Slow readers: GET `target` on n connections and never read until the attack ends. */
async function slowReaders(ctx: Ctx, target: string, n: number): Promise<string> {
  const conns = await Promise.all(Array.from({ length: n }, () => tlsConnect(ctx)));
  for (const c of conns) await writeAll(c, enc.encode(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`));
  await sleep(ctx.until - Date.now());
  const ends = await Promise.all(conns.map((c) => endedByProxy(c, 3000)));
  closeAll(conns);
  const ended = ends.filter((e) => e.ended).length;
  const bytes = ends.reduce((s, e) => s + e.bytes, 0);
  return `${ended}/${n} ended by the proxy; ${Math.round(bytes / MB)} MiB were waiting for the readers`;
}

/** One TLS connection writing pipelined GETs (900-byte padding, 16 per write) and never reading. */
async function pipelining(ctx: Ctx): Promise<string> {
  const c = await tlsConnect(ctx);
  const req = `GET /api/v1/namespaces/default/configmaps/app-config HTTP/1.1\r\nHost: x\r\nX-Pad: ${
    "p".repeat(900)
  }\r\n\r\n`;
  const batch = enc.encode(req.repeat(16));
  let sent = 0, closed = false;
  const writing = (async () => {
    try {
      while (Date.now() < ctx.until) {
        await writeAll(c, batch);
        sent += 16;
      }
    } catch {
      closed = true;
    }
  })();
  await within(writing, ctx.until - Date.now() + 100);
  closeAll([c]);
  await writing;
  return `${sent} requests written${closed ? ", closed by the proxy" : ""}`;
}

/** Two 200 MiB POSTs whose clients keep writing after the answer (Content-Length or chunked). */
async function bodyFlood(ctx: Ctx, chunked: boolean): Promise<string> {
  const one = async () => {
    const c = await tlsConnect(ctx);
    await writeAll(
      c,
      enc.encode(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : `Content-Length: ${200 * MB}\r\n\r\n`),
      ),
    );
    const data = chunked
      ? concat(enc.encode("100000\r\n"), new Uint8Array(MB).fill(97), enc.encode("\r\n"))
      : new Uint8Array(MB).fill(97);
    let answer = "";
    const reading = (async () => {
      const buf = new Uint8Array(4096);
      try {
        for (let n; (n = await c.read(buf)) !== null;) {
          answer ||= dec.decode(buf.subarray(0, n)).split("\r\n")[0];
        }
      } catch { /* reset */ }
    })();
    let sent = 0;
    try {
      // The client never stops: 200 MiB, then more, until the attack ends or the socket dies.
      while (Date.now() < ctx.until) {
        const w = await within(writeAll(c, data).then(() => true), ctx.until - Date.now());
        if (!w) break;
        sent++;
      }
    } catch { /* closed by the proxy */ }
    closeAll([c]);
    await reading;
    return `${answer || "no answer"} after ${sent} MiB written`;
  };
  return (await Promise.all([one(), one()])).join("; ");
}

/** 40 × 3 MB POSTs (under the body limit) to an upstream path that never reads. */
async function bodiesToStuckUpstream(ctx: Ctx): Promise<string> {
  const body = new Uint8Array(3_000_000).fill(97);
  const conns: Deno.TlsConn[] = [];
  let written = 0;
  const answers = new Map<string, number>();
  await Promise.all(Array.from({ length: 40 }, async () => {
    const c = await tlsConnect(ctx);
    conns.push(c);
    try {
      await writeAll(
        c,
        enc.encode(
          `POST /api/v1/namespaces/stuck/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\n\r\n`,
        ),
      );
      const w = await within(writeAll(c, body).then(() => true), ctx.until - Date.now());
      if (w !== undefined) written++;
      const buf = new Uint8Array(4096);
      const n = await within(c.read(buf), Math.max(0, ctx.until - Date.now()));
      const status = n
        ? dec.decode(buf.subarray(0, n)).split("\r\n")[0]
        : n === null
        ? "closed"
        : "no answer";
      answers.set(status, (answers.get(status) ?? 0) + 1);
    } catch {
      answers.set("reset", (answers.get("reset") ?? 0) + 1);
    }
  }));
  closeAll(conns);
  return `${written}/40 bodies fully accepted; answers: ${
    [...answers].map(([s, n]) => `${n}× ${s}`).join(", ")
  }`;
}

/** GETs as fast as 8 keep-alive clients can send them, each answer read (the cloud resets them). */
async function rapidRequests(ctx: Ctx): Promise<string> {
  const statuses = new Map<string, number>();
  let sent = 0;
  await Promise.all(Array.from({ length: 8 }, async (_, k) => {
    const client = Deno.createHttpClient({ caCerts: [ctx.caPem], http2: false });
    try {
      while (Date.now() < ctx.until) {
        sent++;
        let s: string;
        try {
          const r = await fetch(
            `https://127.0.0.1:${ctx.port}/api/v1/namespaces/reset/configmaps/c${k}-${sent}`,
            { client, signal: AbortSignal.timeout(Math.max(1, ctx.until - Date.now())) },
          );
          await r.body?.cancel();
          s = String(r.status);
        } catch {
          s = "error";
        }
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
    } finally {
      client.close();
    }
  }));
  return `${sent} requests; answers: ${[...statuses].map(([s, n]) => `${n}× ${s}`).join(", ")}`;
}

/** n plain TCP connections that never start TLS, held until the attack ends. */
async function rawTcpFlood(ctx: Ctx, n: number): Promise<string> {
  const conns: Deno.Conn[] = [];
  let failed = 0;
  for (let i = 0; i < n && Date.now() < ctx.until; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, async () => {
      const c = await within(Deno.connect({ hostname: "127.0.0.1", port: ctx.port }), 2000).catch(() =>
        undefined
      );
      if (c) conns.push(c);
      else failed++;
    }));
  }
  await sleep(ctx.until - Date.now());
  const open = await Promise.all(conns.map((c) => endedByProxy(c, 200)));
  closeAll(conns);
  return `${conns.length} connected (${failed} did not), ${
    open.filter((o) => o.ended).length
  } closed by the proxy before the end`;
}

/** n connections that start a TLS handshake and trickle it, one byte a second. */
async function slowTlsFlood(ctx: Ctx, n: number): Promise<string> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, async () => {
      const c = await within(Deno.connect({ hostname: "127.0.0.1", port: ctx.port }), 2000).catch(() =>
        undefined
      );
      if (!c) return;
      conns.push(c);
      // A TLS record header announcing a 512-byte ClientHello, then its first byte.
      await c.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])).catch(() => {});
    }));
  }
  let closed = 0;
  const alive = new Set(conns);
  while (Date.now() < ctx.until) {
    await sleep(1000);
    for (const c of alive) {
      c.write(new Uint8Array([0])).catch(() => {
        if (alive.delete(c)) closed++;
      });
    }
  }
  closeAll(conns);
  return `${conns.length} slow handshakes; ${closed} closed by the proxy before the end`;
}

/** Anonymous slowloris: `n` connections that never finish a request head, reopened when closed. */
async function slowloris(ctx: Ctx, n: number): Promise<string> {
  const conns = new Set<Deno.Conn>();
  let opened = 0, refused = 0;
  const one = async () => {
    while (Date.now() < ctx.until) {
      let c: Deno.TlsConn | undefined;
      try {
        c = await tlsConnect(ctx);
        conns.add(c);
        opened++;
        await writeAll(c, enc.encode("GET /version HTTP/1.1\r\nHost: x\r\n"));
        const buf = new Uint8Array(512);
        const reading = c.read(buf).then((r) => {
          if (r && /^HTTP\/1.1 503/.test(dec.decode(buf.subarray(0, r)))) refused++;
          return "ended";
        }, () => "ended");
        while (Date.now() < ctx.until) {
          if (await within(reading, 1000) === "ended") break;
          await writeAll(c, enc.encode("X")); // one byte a second: the head never ends
        }
      } catch { /* closed */ }
      if (c) {
        conns.delete(c);
        closeAll([c]);
      }
      await sleep(50);
    }
  };
  await Promise.all(Array.from({ length: n }, one));
  closeAll(conns);
  return `${opened} slowloris connections opened (${refused} refused with 503)`;
}

/** 300 connections with a certificate from an unknown CA, 10 at a time. */
async function untrustedCerts(ctx: Ctx): Promise<string> {
  let ok = 0, i = 0;
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (i < 300 && Date.now() < ctx.until) {
      i++;
      const client = Deno.createHttpClient({
        caCerts: [ctx.caPem],
        cert: ctx.rogue.certPem,
        key: ctx.rogue.keyPem,
        http2: false,
      });
      try {
        const r = await fetch(`https://127.0.0.1:${ctx.port}/version`, {
          client,
          signal: AbortSignal.timeout(5000),
        });
        await r.body?.cancel();
        if (r.ok) ok++;
      } catch {
        /* counted as not ok */
      } finally {
        client.close();
      }
    }
  }));
  return `${i} connections, ${ok} answered (as anonymous)`;
}

/** Cacheable GETs (300 distinct lists) while the cache's disk is full. */
async function diskFullWrites(ctx: Ctx): Promise<string> {
  const client = Deno.createHttpClient({
    caCerts: [ctx.caPem],
    cert: ctx.kubelet.certPem,
    key: ctx.kubelet.keyPem,
    http2: false,
  });
  let ok = 0, i = 0;
  try {
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (i < 300 && Date.now() < ctx.until) {
        const r = await fetch(
          `https://127.0.0.1:${ctx.port}/api/v1/namespaces/default/configmaps?labelSelector=n%3D${i++}`,
          { client, signal: AbortSignal.timeout(5000) },
        ).catch(() => undefined);
        await r?.body?.cancel();
        if (r?.ok) ok++;
      }
    }));
  } finally {
    client.close();
  }
  return `${ok}/${i} answered`;
}

// ---------------------------------------------------------------------------------------------
// Cases.

interface Case {
  name: string;
  what: string;
  /** The hostile upstream instead of the simulated apiserver. */
  hostile?: boolean;
  /** A hostile HTTP/2 cloud (bench/attack_h2.ts) in this mode instead of the simulated apiserver. */
  h2?: H2Mode;
  extra?: string[];
  launcher?: LiteLauncher;
  /** A 1 MiB tmpfs as the cache dir (needs root); the case is skipped without it. */
  smallDisk?: boolean;
  /** The simulated apiserver black-holed during the attack. */
  fault?: "blackhole";
  /** Say how many requests reached the simulated apiserver. */
  countUpstream?: boolean;
  /** The attack; it runs in a worker (bench/attack_worker.ts), so its loops never delay the
   * simulated apiserver, the hostile upstream or kubelet's probes. */
  run(ctx: Ctx): Promise<string>;
}

/** The shipped launcher under a lowered file limit (as a small box's unit might have). */
const LOW_FILES: LiteLauncher = {
  cmd: "prlimit",
  args: ["--nofile=1024:1024", SHIPPED.cmd, ...SHIPPED.args],
};

export const CASES: Case[] = [
  {
    name: "slow-watch-reader",
    what: "4 watches never read while the upstream sends 64 KiB events as fast as it can",
    hostile: true,
    run: (ctx) => slowReaders(ctx, "/api/v1/namespaces/flood/configmaps?watch=1", 4),
  },
  {
    name: "slow-answer-reader",
    what: "4 GETs of a 512 MiB answer, never read",
    hostile: true,
    run: (ctx) => slowReaders(ctx, "/api/v1/namespaces/big/configmaps", 4),
  },
  {
    name: "pipelining",
    what: "one connection, pipelined GETs with 900-byte padding, never read",
    countUpstream: true,
    run: pipelining,
  },
  {
    name: "body-flood-cl",
    what: "two 200 MiB Content-Length POSTs that keep writing after the answer; cloud black-holed",
    fault: "blackhole",
    run: (ctx) => bodyFlood(ctx, false),
  },
  {
    name: "body-flood-chunked",
    what: "two 200 MiB chunked POSTs that keep writing after the answer; cloud black-holed",
    fault: "blackhole",
    run: (ctx) => bodyFlood(ctx, true),
  },
  {
    name: "bodies-stuck-upstream",
    what: "40 × 3 MB POSTs to an upstream that never reads them",
    hostile: true,
    run: bodiesToStuckUpstream,
  },
  {
    name: "h2-no-window",
    what: "HTTP/2 cloud that never grants window: 40 × 3 MB POSTs stall (--write-timeout 5s)",
    h2: "no-window",
    extra: ["--write-timeout", "5s"],
    run: bodiesToStuckUpstream,
  },
  {
    name: "h2-flood",
    what:
      "HTTP/2 cloud sending 64 KiB events on 40 streams (20 watches, 20 GETs) as the windows allow; clients never read",
    h2: "flood",
    run: async (ctx) =>
      (await Promise.all([
        slowReaders(ctx, "/api/v1/namespaces/flood/configmaps?watch=1", 20),
        slowReaders(ctx, "/api/v1/namespaces/big/configmaps", 20),
      ])).join("; "),
  },
  {
    name: "h2-rapid-reset",
    what:
      "HTTP/2 cloud that resets every stream (REFUSED_STREAM, CANCEL, or after the head); 8 clients as fast as they can",
    h2: "rapid-reset",
    run: rapidRequests,
  },
  {
    name: "raw-tcp-flood",
    what: "1,100 TCP connections that never start TLS; lite-apiserver's file limit 1,024",
    launcher: LOW_FILES,
    run: (ctx) => rawTcpFlood(ctx, 1100),
  },
  {
    name: "slow-tls-flood",
    what: "1,000 TLS handshakes trickled one byte a second",
    run: (ctx) => slowTlsFlood(ctx, 1000),
  },
  {
    name: "cap-starvation",
    what: "--max-connections 50 held by 60 anonymous slowloris connections (reopened when closed)",
    extra: ["--max-connections", "50"],
    run: (ctx) => slowloris(ctx, 60),
  },
  {
    name: "untrusted-cert",
    what: "300 connections with a certificate from an unknown CA",
    run: untrustedCerts,
  },
  {
    name: "disk-full",
    what: "300 cacheable GETs with the cache's disk full (1 MiB tmpfs, file backend)",
    smallDisk: true,
    extra: ["--cache-backend", "file"],
    run: diskFullWrites,
  },
];

// ---------------------------------------------------------------------------------------------
// Measuring.

function mem(pid: number): { rss: number; hwm: number } {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) * 1024;
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/**
 * RSS after glibc's malloc_trim(0) in the process (gdb attaches for a moment): tells memory still
 * in use from freed memory that glibc keeps in its arenas (no API short of FFI gives it back, and
 * the release binary has no --allow-ffi). NaN when gdb is missing or cannot attach.
 */
async function trimmed(pid: number): Promise<number> {
  const r = await new Deno.Command("gdb", {
    args: ["-p", String(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
    stdout: "null",
    stderr: "null",
    // The call can block on an arena lock a stopped thread holds: bounded (the process is killed
    // right after this measurement anyway).
    signal: AbortSignal.timeout(10_000),
  }).output().catch(() => undefined);
  return r?.success ? mem(pid).rss : NaN;
}

interface Probe {
  ok: boolean;
  ms: number;
  status: number;
}

/** kubelet's GET of its node on a new connection every 250 ms (5 s timeout each) until stopped. */
function kubeletProber(ctx: Ctx): { stop(): Promise<Probe[]> } {
  const probes: Probe[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const client = Deno.createHttpClient({
        caCerts: [ctx.caPem],
        cert: ctx.kubelet.certPem,
        key: ctx.kubelet.keyPem,
        http2: false,
      });
      const t0 = performance.now();
      try {
        const r = await fetch(`https://127.0.0.1:${ctx.port}/api/v1/nodes/edge-1`, {
          client,
          signal: AbortSignal.timeout(5000),
        });
        await r.body?.cancel();
        probes.push({ ok: r.status === 200, ms: performance.now() - t0, status: r.status });
      } catch {
        probes.push({ ok: false, ms: performance.now() - t0, status: 0 });
      } finally {
        client.close();
      }
      await sleep(250);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return probes;
    },
  };
}

/** Ms until a new anonymous connection gets any HTTP answer to GET /version (each try 1 s), or NaN after 10 s. */
async function recovery(port: number, caPem: string): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < 10_000) {
    const client = Deno.createHttpClient({ caCerts: [caPem], http2: false });
    try {
      const r = await fetch(`https://127.0.0.1:${port}/version`, {
        client,
        signal: AbortSignal.timeout(1000),
      });
      await r.body?.cancel();
      // Any HTTP answer proves the listener accepts (a 503 from a cloud still offline too).
      if (r.status > 0) return performance.now() - t0;
    } catch {
      /* not yet */
    } finally {
      client.close();
    }
    await sleep(50);
  }
  return NaN;
}

const LINE = /^(\S+) (WARN|ERROR)\s+(.*)$/;

/** WARN/ERROR lines grouped by kind (the message without fields or summary): the most in any 1 s. */
export interface LogVolume {
  /** The most lines of one kind in any one second, and that kind. */
  maxPerSecond: number;
  kind: string;
  total: number;
  /** Per kind: its lines and its most in any one second. */
  kinds: Record<string, { lines: number; maxPerSecond: number }>;
}

export function logVolume(lines: string[]): LogVolume {
  const perKind = new Map<string, Map<number, number>>();
  let total = 0;
  for (const l of lines) {
    const m = LINE.exec(l);
    if (!m) continue;
    total++;
    const kind = m[3].replace(/ \.\.\. and \d+ more like this.*$/, "").replace(/ [\w.-]+=.*$/, "");
    const second = Math.floor(Date.parse(m[1]) / 1000);
    const k = perKind.get(kind) ?? new Map<number, number>();
    k.set(second, (k.get(second) ?? 0) + 1);
    perKind.set(kind, k);
  }
  const out: LogVolume = { maxPerSecond: 0, kind: "", total, kinds: {} };
  for (const [kind, secs] of perKind) {
    const max = Math.max(...secs.values());
    out.kinds[kind] = { lines: [...secs.values()].reduce((a, b) => a + b, 0), maxPerSecond: max };
    if (max > out.maxPerSecond) Object.assign(out, { maxPerSecond: max, kind });
  }
  return out;
}

interface Result {
  name: string;
  peakMB: number;
  afterMB: number;
  /** RSS once glibc was asked to give back the free memory it keeps (malloc_trim via gdb); NaN without gdb. */
  afterTrimMB: number;
  /** RSS, and the peak so far, when the attack time ended (before the attackers' last reads). */
  atEndMB: number;
  peakAtEndMB: number;
  kubelet: string;
  kubeletOk: boolean;
  recoveryMs: number;
  log: LogVolume;
  note: string;
  skipped?: string;
}

async function tinyDisk(): Promise<
  { dir: string; fill(): Promise<void>; close(): Promise<void> } | undefined
> {
  const mnt = await Deno.makeTempDir({ prefix: "attack-disk-" });
  const m = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt] })
    .output().catch(() => undefined);
  if (!m?.success) {
    await Deno.remove(mnt).catch(() => {});
    return undefined;
  }
  await Deno.mkdir(`${mnt}/cache`);
  return {
    dir: `${mnt}/cache`,
    async fill() {
      const f = await Deno.open(`${mnt}/filler`, { write: true, create: true });
      try {
        for (let i = 0; i < 64; i++) await f.write(new Uint8Array(64 * 1024));
      } catch {
        /* full: the point */
      } finally {
        f.close();
      }
    },
    async close() {
      await new Deno.Command("umount", { args: ["-l", mnt] }).output().catch(() => {});
      await Deno.remove(mnt, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs the case's attack in a worker of its own; bounded (the worker is terminated). */
async function inWorker(name: string, ctx: Ctx): Promise<string> {
  const worker = new Worker(new URL("./attack_worker.ts", import.meta.url), { type: "module" });
  try {
    const done = new Promise<string>((resolve) => {
      worker.onmessage = (e: MessageEvent<string>) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        resolve(`the attacker failed: ${e.message}`);
      };
    });
    worker.postMessage({ name, ctx });
    return await within(done, ATTACK_MS + 20_000) ?? "(the attack did not stop in time)";
  } finally {
    worker.terminate();
  }
}

async function runCase(
  c: Case,
  cluster: Cluster,
  hostile: Hostile,
  rogue: CertPair,
  hostilePair: CertPair,
): Promise<Result> {
  const disk = c.smallDisk ? await tinyDisk() : undefined;
  const empty = {
    peakMB: NaN,
    afterMB: NaN,
    afterTrimMB: NaN,
    atEndMB: NaN,
    peakAtEndMB: NaN,
    kubelet: "-",
    kubeletOk: false,
    recoveryMs: NaN,
    note: "",
  };
  if (c.smallDisk && !disk) {
    return {
      name: c.name,
      ...empty,
      log: { maxPerSecond: 0, kind: "", total: 0, kinds: {} },
      skipped: "needs root (tmpfs)",
    };
  }
  const h2: HostileH2 | undefined = c.h2 ? startHostileH2(hostilePair, c.h2) : undefined;
  const lite = await startLite(cluster, {
    env: UNIT_ENV,
    launcher: c.launcher ?? SHIPPED,
    upstream: h2?.url ?? (c.hostile ? hostile.url : undefined),
    cacheDir: disk?.dir,
    extra: [...PROBES, ...(c.extra ?? [])],
  });
  try {
    const ctx: Ctx = {
      until: Date.now() + ATTACK_MS,
      port: lite.port,
      caPem: cluster.pki.caPem,
      rogue,
      kubelet: cluster.kubelet,
    };
    // kubelet's node is cached before the attack (so a black-holed cloud still leaves it an answer).
    const warm = kubeletProber(ctx);
    await sleep(300);
    await warm.stop();
    await disk?.fill();
    if (c.fault) await cluster.apiserver.setFault(c.fault);
    const upstreamBefore = cluster.apiserver.requests.length;
    const from = lite.lines.length;
    ctx.until = Date.now() + ATTACK_MS;
    const prober = kubeletProber(ctx);
    // RSS and its high-water mark when the attack time ends (before the attackers' last reads).
    const atEnd = sleep(ctx.until - Date.now()).then(() => mem(lite.child.pid));
    let note = await inWorker(c.name, ctx);
    // kubelet is probed for the whole attack time, also when the attacker is done early.
    await sleep(ctx.until - Date.now());
    const probes = await prober.stop();
    if (c.fault) await cluster.apiserver.setFault("none");
    if (h2) note += `; the cloud saw ${h2.streams} streams (${h2.resets} reset)`;
    if (c.countUpstream) {
      note += `; ${cluster.apiserver.requests.length - upstreamBefore} reached the apiserver`;
    }
    if (disk) {
      const st = await fetch(`${lite.adminUrl}/status`).then((r) => r.json()).catch(() => undefined);
      const f = st?.queue?.failing;
      note += `; /status: ${
        f ? `"cache writes failing since ${f.since}", ${f.failedOps} lost` : "no problem shown"
      }`;
    }
    const recoveryMs = await recovery(lite.port, cluster.pki.caPem);
    const peak = mem(lite.child.pid).hwm;
    await sleep(AFTER_MS);
    const after = mem(lite.child.pid).rss;
    const afterTrim = await trimmed(lite.child.pid);
    const end = await atEnd;
    const ok = probes.filter((p) => p.ok);
    const codes = new Map<number, number>();
    for (const p of probes) if (!p.ok) codes.set(p.status, (codes.get(p.status) ?? 0) + 1);
    const worst = Math.max(0, ...ok.map((p) => p.ms));
    const fails = [...codes].map(([s, n]) => `${n}× ${s || "error"}`).join(", ");
    return {
      name: c.name,
      peakMB: peak / MB,
      afterMB: after / MB,
      afterTrimMB: afterTrim / MB,
      atEndMB: end.rss / MB,
      peakAtEndMB: end.hwm / MB,
      kubelet: `${ok.length}/${probes.length} answered, worst ${Math.round(worst)} ms${
        fails ? `; ${fails}` : ""
      }`,
      kubeletOk: probes.length > 0 && ok.length === probes.length,
      recoveryMs,
      log: logVolume(lite.lines.slice(from)),
      note,
    };
  } finally {
    await lite.kill("SIGKILL");
    await h2?.close();
    await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    await disk?.close();
  }
}

function table(results: Result[]): string {
  const mark = (ok: boolean) => ok ? "✓" : "✗";
  const out = [
    "| case | peak RSS (≤150 MB) | RSS 10 s after (≤100 MB) | after malloc_trim | kubelet (every probe answered) | listener back (≤1 s) | log lines/s per kind (≤1) | what the attacker saw |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    if (r.skipped) {
      out.push(`| ${r.name} | skipped: ${r.skipped} | | | | | | |`);
      continue;
    }
    const rec = Number.isNaN(r.recoveryMs) ? "no (10 s)" : `${Math.round(r.recoveryMs)} ms`;
    const log = r.log.total
      ? `${r.log.maxPerSecond} (${r.log.total} lines; worst: "${r.log.kind.slice(0, 60)}")`
      : "0";
    out.push(
      `| ${r.name} | ${mark(r.peakMB <= 150)} ${r.peakMB.toFixed(0)} MB | ${mark(r.afterMB <= 100)} ${
        r.afterMB.toFixed(0)
      } MB | ${Number.isNaN(r.afterTrimMB) ? "-" : `${r.afterTrimMB.toFixed(0)} MB`} | ${
        mark(r.kubeletOk)
      } ${r.kubelet} | ${mark(r.recoveryMs <= 1000)} ${rec} | ${
        mark(r.log.maxPerSecond <= 1)
      } ${log} | ${r.note} |`,
    );
  }
  return out.join("\n");
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--list")) {
    for (const c of CASES) console.log(`${c.name.padEnd(24)} ${c.what}`);
    return 0;
  }
  const i = args.indexOf("--case");
  const eq = args.find((a) => a.startsWith("--case="))?.slice(7);
  const wanted = (eq ?? (i >= 0 ? args[i + 1] : undefined))?.split(",");
  const unknown = wanted?.filter((w) => !CASES.some((c) => c.name === w)) ?? [];
  if (unknown.length || (i >= 0 && !args[i + 1])) {
    console.error(
      `bench/attack.ts: unknown case ${unknown.join(", ") || "(none given)"}; cases: ${
        CASES.map((c) => c.name).join(", ")
      }`,
    );
    return 2;
  }
  const cases = wanted ? CASES.filter((c) => wanted.includes(c.name)) : CASES;
  const cluster = await startCluster();
  const hostilePair = await cluster.pki.server("hostile-upstream");
  const hostile = startHostile(hostilePair);
  const rogue = await cluster.pki.rogue("intruder");
  const results: Result[] = [];
  try {
    for (const c of cases) {
      console.error(`attack: ${c.name}: ${c.what}`);
      const r = await runCase(c, cluster, hostile, rogue, hostilePair);
      console.error(`attack: ${c.name}: ${JSON.stringify(r)}`);
      results.push(r);
    }
  } finally {
    await hostile.close();
    await cluster.close();
  }
  const md =
    `Attack bench (${
      new Date().toISOString()
    }, ${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno})` +
    `\n\n${table(results)}\n`;
  console.log(md);
  if (!wanted) {
    // A full run is kept beside `deno task bench`'s results; a --case run only prints.
    const dir = new URL("./results/", import.meta.url).pathname;
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}attack-latest.md`, md);
    await Deno.writeTextFile(
      `${dir}attack-latest.json`,
      JSON.stringify({ date: new Date().toISOString(), results }, null, 2) + "\n",
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
