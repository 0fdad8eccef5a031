/**
 * The wire relay: terminates the clients' TLS (with the apiserver's serving pair, asking for client
 * certificates), forwards requests unchanged over plain TCP to the simulated apiserver's internal
 * HTTP listener, parses its answers and writes them back in the current wire mode (see
 * wire_modes.ts). Request bytes are passed through as they come; the requests are parsed only to
 * know each answer's method (HEAD) and whether it may be gzipped. After a 101 both directions are
 * a raw tunnel. The client's verified certificate reaches the apiserver through `register`,
 * keyed by the relay's upstream port (same process, so nothing on the wire can forge it).
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { type ConnCert, readConnCert } from "./auth.ts";
import { header, type MessageHead, MessageReader } from "./http_reader.ts";
import {
  type Piece,
  planAnswer,
  planStreamData,
  planStreamEnd,
  planStreamHead,
  type WireMode,
  wireMode,
  type WireModeName,
} from "./wire_modes.ts";

/** Options of {@link WireRelay}. */
export interface WireRelayOptions {
  cert: string;
  key: string;
  ca: string;
  /** The apiserver's internal plain-HTTP port. */
  targetPort: number;
  /** Tells the apiserver who the client of the upstream connection from `localPort` is. */
  register(localPort: number, conn: ConnCert): void;
  unregister(localPort: number): void;
  mode?: WireMode | WireModeName;
  /** How delays are waited for (tests hold them to see the pieces one by one). */
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The relay. */
export class WireRelay {
  private server?: tls.Server;
  private readonly sockets = new Set<net.Socket>();
  private mode: WireMode;
  port = 0;

  constructor(private readonly opts: WireRelayOptions) {
    this.mode = wireMode(opts.mode ?? "gentle");
  }

  /** Switches the mode for answers planned from now on. */
  setMode(mode: WireMode | WireModeName): void {
    this.mode = wireMode(mode);
  }

  /** Starts listening on a random loopback port. */
  start(): Promise<void> {
    const server = tls.createServer({
      cert: this.opts.cert,
      key: this.opts.key,
      ca: this.opts.ca,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    }, (c) => this.accept(c));
    server.on("tlsClientError", () => {});
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(c: tls.TLSSocket): void {
    const conn = readConnCert(c);
    const u = net.connect(this.opts.targetPort, "127.0.0.1");
    this.sockets.add(c).add(u);
    let localPort = 0;
    const early: Uint8Array[] = [];
    let connected = false;
    const finish = () => {
      this.sockets.delete(c), this.sockets.delete(u);
      if (localPort) this.opts.unregister(localPort);
      c.destroy(), u.destroy();
    };
    c.on("error", finish).on("close", finish);
    u.on("error", finish);
    u.on("connect", () => {
      localPort = u.localPort!;
      this.opts.register(localPort, conn);
      connected = true;
      for (const b of early.splice(0)) u.write(b);
    });

    // Client → apiserver: bytes unchanged; requests parsed for their method and Accept-Encoding.
    const requests: { method: string; acceptGzip: boolean }[] = [];
    const reqReader = new MessageReader();
    c.on("data", (d: Uint8Array) => {
      try {
        for (const ev of reqReader.push(d)) {
          if (ev.type === "head") {
            requests.push({
              method: ev.head.method,
              acceptGzip: /\bgzip\b/i.test(header(ev.head, "accept-encoding") ?? ""),
            });
          }
        }
      } catch { /* a request we cannot parse: still forwarded, the apiserver answers it */ }
      if (connected) u.write(d);
      else early.push(d);
    });

    // Apiserver → client: answers re-written in the mode, in order, one write chain per connection.
    let chain = Promise.resolve();
    const write = (pieces: () => Piece[]) => {
      chain = chain.then(() => this.writePieces(c, pieces()));
    };
    let current: { method: string; acceptGzip: boolean } | undefined;
    const resReader = new MessageReader((head) => {
      if (head.status >= 200 || head.status === 101) current = requests.shift();
      return current?.method === "HEAD";
    });
    let answer: { head: MessageHead; body: Uint8Array[]; streamed: boolean; chunked: boolean } | undefined;
    let sentData = false;
    let tunnel = false;
    u.on("data", (d: Uint8Array) => {
      if (tunnel) return write(() => [{ delayMs: 0, bytes: d }]);
      let events;
      try {
        events = resReader.push(d);
      } catch {
        return finish();
      }
      for (const ev of events) {
        if (ev.type === "head") {
          const streamed = ev.framing === "chunked" || ev.framing === "close";
          answer = { head: ev.head, body: [], streamed, chunked: ev.framing === "chunked" };
          sentData = false;
          if (streamed && ev.head.status !== 101) {
            const head = ev.head, chunked = ev.framing === "chunked";
            write(() => planStreamHead(head, chunked));
          }
        } else if (ev.type === "upgrade") {
          const head = answer!.head, rest = ev.rest;
          tunnel = true;
          write(
            () => [{ delayMs: 0, bytes: planStreamHead(head, false)[0].bytes }, { delayMs: 0, bytes: rest }],
          );
        } else if (ev.type === "data") {
          const a = answer!;
          if (a.streamed) {
            const first = !sentData, data = ev.bytes, chunked = a.chunked;
            sentData = true;
            write(() => planStreamData(data, this.mode, chunked, first));
          } else a.body.push(ev.bytes.slice());
        } else if (ev.type === "end") {
          const a = answer!;
          answer = undefined;
          if (a.head.status === 101) continue;
          const req = current ?? { method: "GET", acceptGzip: false };
          if (a.streamed) {
            const chunked = a.chunked;
            write(() => planStreamEnd(chunked));
            if (!chunked) chain = chain.then(() => void c.end());
          } else {
            const body = concat(a.body);
            const framing = a.chunked ? "chunked" : "length";
            const bodyless = req.method === "HEAD" || a.head.status === 204 || a.head.status === 304 ||
              a.head.status < 200;
            write(() =>
              planAnswer(a.head, body, this.mode, { acceptGzip: req.acceptGzip, bodyless, framing })
            );
          }
        }
      }
    });
    u.on("end", () => {
      for (const ev of resReader.close()) {
        if (ev.type === "end") write(() => []);
      }
      chain = chain.then(() => void c.end());
    });
  }

  private async writePieces(c: net.Socket, pieces: Piece[]): Promise<void> {
    const sleep = this.opts.sleep ?? defaultSleep;
    for (const p of pieces) {
      if (p.delayMs > 0) await sleep(p.delayMs);
      if (c.destroyed) return;
      if (!c.write(p.bytes)) await new Promise<void>((r) => c.once("drain", r).once("close", r));
    }
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}
