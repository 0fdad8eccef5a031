/**
 * A test-only HTTP/2 front for the simulated apiserver, built from lib/upstream/h2's codec: TLS with
 * ALPN h2,http/1.1 and client certificates. An h2 connection's streams become HTTP/1.1 requests to
 * the simulated apiserver's plain listener; an http/1.1 connection is piped to it byte for byte.
 * Like the real apiserver (Go), it sends a response head as soon as it has one (nginx holds an h2
 * head until the first body byte, which a quiet watch never sends). The client certificate is
 * registered by the backend connection's local port, as the wire relay does.
 *
 * Test knobs: `setMaxStreams` announces a new SETTINGS_MAX_CONCURRENT_STREAMS on every connection,
 * `goaway` sends GOAWAY (in-flight streams finish), `connections` counts h2 connections.
 */
import * as http from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";
import {
  encodeFrame,
  encodeGoaway,
  encodePing,
  encodeRst,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  parseSettings,
  parseWindowUpdate,
  Setting,
  unpad,
} from "../../../lib/http2/frame.ts";
import { type HeaderField, HpackDecoder, HpackEncoder } from "../../../lib/http2/hpack.ts";
import { type ConnCert, readConnCert } from "./auth.ts";

export interface CodecH2FrontOptions {
  backendPort: number;
  ca: string;
  cert: string;
  key: string;
  maxStreams?: number;
  register(port: number, cert: ConnCert): void;
  unregister(port: number): void;
}

export interface CodecH2Front {
  port: number;
  /** HTTP/2 connections open now. */
  readonly h2Connections: number;
  setMaxStreams(n: number): void;
  goaway(): void;
  /** Open h2 connections of verified client certificates go silent (half-open: no PING answers). */
  silenceCertConnections(): void;
  close(): Promise<void>;
}

const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

interface ServerStream {
  id: number;
  req?: http.ClientRequest;
  res?: http.IncomingMessage;
  queue: Uint8Array[];
  queued: number;
  ended: boolean;
  sendWindow: number;
  closed: boolean;
}

class Session {
  #sock: tls.TLSSocket;
  #opts: CodecH2FrontOptions;
  #cert: ConnCert;
  #prefaceLeft = PREFACE.length;
  #reader = new FrameReader(16_384, (f) => this.#onFrame(f));
  #dec = new HpackDecoder();
  #enc = new HpackEncoder();
  #streams = new Map<number, ServerStream>();
  #block?: { id: number; parts: Uint8Array[]; end: boolean };
  #peerWindow = 65_535;
  #connWindow = 65_535;
  #maxFrame = 16_384;
  #lastId = 0;
  #agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  /** Backend sockets whose close is already watched. */
  #seen = new WeakSet<net.Socket>();
  #goingAway = false;
  closed = false;
  /** A half-open connection: nothing read is answered, nothing more is sent. */
  silent = false;
  get cert(): ConnCert {
    return this.#cert;
  }

  constructor(
    sock: tls.TLSSocket,
    opts: CodecH2FrontOptions,
    private maxStreams: number,
    private onClose: () => void,
  ) {
    this.#sock = sock;
    this.#opts = opts;
    this.#cert = readConnCert(sock);
    sock.write(
      encodeSettings([[Setting.MAX_CONCURRENT_STREAMS, maxStreams], [Setting.INITIAL_WINDOW_SIZE, 1 << 20]]),
    );
    sock.write(encodeWindowUpdate(0, (16 << 20) - 65_535));
    sock.on("data", (c: Uint8Array) => this.#onData(c));
    sock.on("error", () => sock.destroy());
    sock.on("close", () => this.#onCloseSock());
  }

  setMaxStreams(n: number) {
    this.maxStreams = n;
    this.#write(encodeSettings([[Setting.MAX_CONCURRENT_STREAMS, n]]));
  }

  goaway() {
    this.#goingAway = true;
    this.#write(encodeGoaway(this.#lastId, ErrorCode.NO_ERROR, "test goaway"));
    this.#maybeEnd();
  }

  #write(b: Uint8Array) {
    if (!this.#sock.destroyed && !this.silent) this.#sock.write(b);
  }

  #onData(c: Uint8Array) {
    if (this.silent) return;
    if (this.#prefaceLeft > 0) {
      const n = Math.min(this.#prefaceLeft, c.byteLength);
      const got = new TextDecoder().decode(c.subarray(0, n));
      const want = PREFACE.slice(PREFACE.length - this.#prefaceLeft, PREFACE.length - this.#prefaceLeft + n);
      if (got !== want) return this.#sock.destroy();
      this.#prefaceLeft -= n;
      c = c.subarray(n);
    }
    try {
      this.#reader.feed(c);
    } catch {
      this.#write(encodeGoaway(this.#lastId, ErrorCode.PROTOCOL_ERROR));
      this.#sock.destroy();
    }
  }

  #onFrame(f: Frame) {
    switch (f.type) {
      case FrameType.SETTINGS: {
        if (f.flags & Flag.ACK) return;
        for (const [id, v] of parseSettings(f)) {
          if (id === Setting.INITIAL_WINDOW_SIZE) {
            const d = v - this.#peerWindow;
            this.#peerWindow = v;
            for (const s of this.#streams.values()) s.sendWindow += d;
          }
          if (id === Setting.MAX_FRAME_SIZE) this.#maxFrame = v;
        }
        this.#write(encodeSettings([], true));
        return this.#flushAll();
      }
      case FrameType.PING:
        if (!(f.flags & Flag.ACK)) this.#write(encodePing(f.payload, true));
        return;
      case FrameType.WINDOW_UPDATE: {
        const inc = parseWindowUpdate(f);
        if (f.stream === 0) this.#connWindow += inc;
        else {
          const s = this.#streams.get(f.stream);
          if (s) s.sendWindow += inc;
        }
        return this.#flushAll();
      }
      case FrameType.HEADERS:
        this.#block = { id: f.stream, parts: [unpad(f).slice()], end: (f.flags & Flag.END_STREAM) !== 0 };
        if (f.flags & Flag.END_HEADERS) this.#onHeaders();
        return;
      case FrameType.CONTINUATION:
        this.#block?.parts.push(f.payload.slice());
        if (f.flags & Flag.END_HEADERS) this.#onHeaders();
        return;
      case FrameType.DATA: {
        // Test server: window is given back at once.
        if (f.payload.byteLength) {
          this.#write(encodeWindowUpdate(0, f.payload.byteLength));
          this.#write(encodeWindowUpdate(f.stream, f.payload.byteLength));
        }
        const s = this.#streams.get(f.stream);
        if (!s?.req) return;
        const body = unpad(f);
        if (body.byteLength) s.req.write(body);
        if (f.flags & Flag.END_STREAM) s.req.end();
        return;
      }
      case FrameType.RST_STREAM: {
        const s = this.#streams.get(f.stream);
        if (s) this.#close(s, false);
        return;
      }
      case FrameType.GOAWAY:
        this.#goingAway = true;
        return this.#maybeEnd();
    }
  }

  #onHeaders() {
    const b = this.#block!;
    this.#block = undefined;
    const total = b.parts.reduce((n, p) => n + p.byteLength, 0);
    const block = new Uint8Array(total);
    let at = 0;
    for (const p of b.parts) {
      block.set(p, at);
      at += p.byteLength;
    }
    const fields = this.#dec.decode(block);
    if (b.id <= this.#lastId) return; // trailers: ignored
    this.#lastId = b.id;
    if (this.#goingAway || this.#streams.size >= this.maxStreams) {
      return this.#write(encodeRst(b.id, ErrorCode.REFUSED_STREAM));
    }
    const pseudo: Record<string, string> = {};
    const headers: Record<string, string | string[]> = {};
    for (const [n, v] of fields) {
      if (n.startsWith(":")) pseudo[n] = v;
      else if (headers[n] === undefined) headers[n] = v;
      else headers[n] = ([] as string[]).concat(headers[n], v);
    }
    headers.host = pseudo[":authority"] ?? "";
    const s: ServerStream = {
      id: b.id,
      queue: [],
      queued: 0,
      ended: false,
      sendWindow: this.#peerWindow,
      closed: false,
    };
    this.#streams.set(b.id, s);
    const req = http.request({
      host: "127.0.0.1",
      port: this.#opts.backendPort,
      method: pseudo[":method"],
      path: pseudo[":path"],
      headers,
      agent: this.#agent,
    });
    s.req = req;
    req.on("socket", (sock: net.Socket) => {
      const reg = () => this.#opts.register(sock.localPort!, this.#cert);
      if (sock.localPort) reg();
      else sock.once("connect", reg);
      // The agent reuses sockets: one close listener per socket, not one per request.
      if (this.#seen.has(sock)) return;
      this.#seen.add(sock);
      sock.once("close", () => sock.localPort && this.#opts.unregister(sock.localPort));
    });
    req.on("response", (res) => {
      s.res = res;
      const out: HeaderField[] = [[":status", String(res.statusCode)]];
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const n = res.rawHeaders[i].toLowerCase();
        if (!HOP.has(n)) out.push([n, res.rawHeaders[i + 1]]);
      }
      // The head goes out at once, as Go's server does.
      this.#write(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, s.id, this.#enc.encode(out)));
      res.on("data", (c: Uint8Array) => {
        s.queue.push(c);
        s.queued += c.byteLength;
        if (s.queued > 1 << 20) res.pause();
        this.#flush(s);
      });
      res.on("end", () => {
        s.ended = true;
        this.#flush(s);
      });
      res.on("error", () => this.#close(s, true));
      res.on("aborted", () => this.#close(s, true));
    });
    req.on("error", () => {
      if (!s.res && !s.closed) {
        this.#write(encodeFrame(
          FrameType.HEADERS,
          Flag.END_HEADERS | Flag.END_STREAM,
          s.id,
          this.#enc.encode([[":status", "502"]]),
        ));
        this.#close(s, false);
      } else this.#close(s, true);
    });
    if (b.end) req.end();
  }

  #flushAll() {
    for (const s of this.#streams.values()) this.#flush(s);
  }

  #flush(s: ServerStream) {
    if (s.closed) return;
    while (s.queue.length) {
      const room = Math.min(this.#connWindow, s.sendWindow, this.#maxFrame);
      if (room <= 0) return;
      let c = s.queue[0];
      if (c.byteLength > room) {
        s.queue[0] = c.subarray(room);
        c = c.subarray(0, room);
      } else s.queue.shift();
      s.queued -= c.byteLength;
      this.#connWindow -= c.byteLength;
      s.sendWindow -= c.byteLength;
      this.#write(encodeFrame(FrameType.DATA, 0, s.id, c));
    }
    if (s.res?.isPaused() && s.queued < 1 << 18) s.res.resume();
    if (s.ended) {
      this.#write(encodeFrame(FrameType.DATA, Flag.END_STREAM, s.id));
      this.#close(s, false);
    }
  }

  #close(s: ServerStream, reset: boolean) {
    if (s.closed) return;
    s.closed = true;
    if (reset) this.#write(encodeRst(s.id, ErrorCode.INTERNAL_ERROR));
    this.#streams.delete(s.id);
    if (!s.ended) s.req?.destroy();
    this.#maybeEnd();
  }

  #maybeEnd() {
    if (this.#goingAway && this.#streams.size === 0) this.#sock.end();
  }

  #onCloseSock() {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.#streams.values()]) {
      s.closed = true;
      s.req?.destroy();
    }
    this.#streams.clear();
    this.#agent.destroy();
    this.onClose();
  }

  destroy() {
    this.#sock.destroy();
  }
}

export async function startCodecH2Front(opts: CodecH2FrontOptions): Promise<CodecH2Front> {
  let maxStreams = opts.maxStreams ?? 100;
  const sessions = new Set<Session>();
  const pipes = new Set<net.Socket>();
  const server = tls.createServer({
    ca: opts.ca,
    cert: opts.cert,
    key: opts.key,
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: ["h2", "http/1.1"],
  });
  server.on("secureConnection", (sock: tls.TLSSocket) => {
    if (sock.alpnProtocol === "h2") {
      const s: Session = new Session(sock, opts, maxStreams, () => sessions.delete(s));
      sessions.add(s);
      return;
    }
    // HTTP/1.1: bytes piped to the plain listener; the certificate is known by the backend port.
    const cert = readConnCert(sock);
    const up = net.connect(opts.backendPort, "127.0.0.1");
    pipes.add(sock);
    up.once("connect", () => opts.register(up.localPort!, cert));
    sock.pipe(up);
    up.pipe(sock);
    const done = () => {
      pipes.delete(sock);
      if (up.localPort) opts.unregister(up.localPort);
      sock.destroy();
      up.destroy();
    };
    sock.on("error", done);
    up.on("error", done);
    sock.on("close", done);
    up.on("close", done);
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get h2Connections() {
      return sessions.size;
    },
    setMaxStreams(n) {
      maxStreams = n;
      for (const s of sessions) s.setMaxStreams(n);
    },
    goaway() {
      for (const s of sessions) s.goaway();
    },
    silenceCertConnections() {
      for (const s of sessions) if (s.cert.state === "verified") s.silent = true;
    },
    async close() {
      for (const s of sessions) s.destroy();
      for (const p of pipes) p.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
