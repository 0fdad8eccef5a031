/**
 * A cloud that streams as fast as it can (slow-reader tests and bench/slow_reader.ts): on
 * `Deno.listenTls`, whose writes wait for the peer, so it sends exactly what lite-apiserver reads.
 * - `GET ...?watch=1&resourceVersion=N`: a JSON watch of ConfigMap events of `eventBytes` each,
 *   resourceVersions N+1, N+2, ... until `maxEvents` (then the answer ends) or the proxy closes.
 * - `GET .../configmaps` (no watch): a list of `listBytes` with Content-Length.
 * - anything else (health probes): a small 200.
 * Each watch and list records how it ended: `closedEarly` when the proxy closed the connection
 * before the whole answer was written.
 */
export interface StreamRecord {
  kind: "watch" | "list";
  fromRv: number;
  /** Events (watch) or bytes (list) written. */
  sent: number;
  done: boolean;
  closedEarly: boolean;
}

export interface StreamUpstream {
  url: string;
  records: StreamRecord[];
  close(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function configMapEvent(rv: number, bytes: number): Uint8Array {
  const event = (pad: string) =>
    JSON.stringify({
      type: "MODIFIED",
      object: {
        kind: "ConfigMap",
        apiVersion: "v1",
        metadata: { name: "big", namespace: "default", resourceVersion: String(rv) },
        data: { pad },
      },
    }) + "\n";
  const overhead = enc.encode(event("")).byteLength;
  return enc.encode(event("x".repeat(Math.max(0, bytes - overhead))));
}

export function startStreamUpstream(opts: {
  certPem: string;
  keyPem: string;
  eventBytes?: number;
  maxEvents?: number;
  listBytes?: number;
  /** A pause between watch events (a cloud that sends at a steady pace); 0: as fast as it can. */
  paceMs?: number;
}): StreamUpstream {
  const eventBytes = opts.eventBytes ?? 64 << 10;
  const maxEvents = opts.maxEvents ?? 4000;
  const listBytes = opts.listBytes ?? 256 << 20;
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: opts.certPem, key: opts.keyPem });
  const conns = new Set<Deno.TlsConn>();
  const records: StreamRecord[] = [];

  const serve = async (conn: Deno.TlsConn) => {
    conns.add(conn);
    let buf = "";
    const chunk = new Uint8Array(64 << 10);
    try {
      for (;;) {
        let end;
        while ((end = buf.indexOf("\r\n\r\n")) < 0) {
          const n = await conn.read(chunk);
          if (n === null) return;
          buf += dec.decode(chunk.subarray(0, n));
        }
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const target = head.split(" ")[1] ?? "/";
        const url = new URL(target, "https://x");
        if (url.searchParams.get("watch")) {
          await watch(conn, Number(url.searchParams.get("resourceVersion") ?? "0"));
          return;
        }
        if (url.pathname.endsWith("/configmaps")) {
          await list(conn);
          return;
        }
        const body = '{"kind":"Status","apiVersion":"v1","status":"Success"}';
        await writeAll(
          conn,
          enc.encode(
            `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
          ),
        );
      }
    } catch {
      // The proxy closed the connection.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };

  const watch = async (conn: Deno.TlsConn, fromRv: number) => {
    const rec: StreamRecord = { kind: "watch", fromRv, sent: 0, done: false, closedEarly: false };
    records.push(rec);
    try {
      await writeAll(
        conn,
        enc.encode("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"),
      );
      for (let i = 1; i <= maxEvents; i++) {
        const ev = configMapEvent(fromRv + i, eventBytes);
        await writeAll(conn, enc.encode(`${ev.byteLength.toString(16)}\r\n`), ev, enc.encode("\r\n"));
        rec.sent = i;
        if (opts.paceMs) await new Promise((r) => setTimeout(r, opts.paceMs));
      }
      await writeAll(conn, enc.encode("0\r\n\r\n"));
    } catch {
      rec.closedEarly = true;
    }
    rec.done = true;
  };

  const list = async (conn: Deno.TlsConn) => {
    const rec: StreamRecord = { kind: "list", fromRv: 0, sent: 0, done: false, closedEarly: false };
    records.push(rec);
    const prefix = enc.encode(
      '{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[],"pad":"',
    );
    const suffix = enc.encode('"}');
    try {
      await writeAll(
        conn,
        enc.encode(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${listBytes}\r\n\r\n`,
        ),
      );
      await writeAll(conn, prefix);
      rec.sent = prefix.byteLength;
      const pad = new Uint8Array(64 << 10).fill(0x78);
      while (rec.sent < listBytes - suffix.byteLength) {
        const n = Math.min(pad.byteLength, listBytes - suffix.byteLength - rec.sent);
        await writeAll(conn, pad.subarray(0, n));
        rec.sent += n;
      }
      await writeAll(conn, suffix);
      rec.sent += suffix.byteLength;
    } catch {
      rec.closedEarly = true;
    }
    rec.done = true;
  };

  (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});

  return {
    url: `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    records,
    async close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await new Promise((r) => setTimeout(r, 0));
    },
  };
}

async function writeAll(conn: Deno.Conn, ...parts: Uint8Array[]) {
  for (const p of parts) {
    for (let off = 0; off < p.byteLength;) off += await conn.write(p.subarray(off));
  }
}
