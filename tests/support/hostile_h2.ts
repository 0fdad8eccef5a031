/**
 * A hostile HTTP/2 cloud for bench/attack.ts and the e2e tests (issue 21: memory per stream is bounded like everything
 * else). Deno.listenTls with ALPN h2 only, so lite-apiserver's upstream pool speaks HTTP/2 to it; it
 * reads only when asked. kubelet's node (GET /api/v1/nodes/edge-1) and the health checks (/readyz)
 * are always answered; everything else misbehaves by mode:
 * - `no-window`: SETTINGS_INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE: no request body byte can
 *   go out, and no request is ever answered.
 * - `flood`: every other request is answered 200 with 64 KiB watch events, sent as fast as the
 *   windows lite-apiserver grants let them (so what it holds is what it granted).
 * - `rapid-reset`: every other stream is reset at once (REFUSED_STREAM, then CANCEL, in turn), or
 *   after its response head and one DATA frame.
 */
import {
  encodeFrame,
  encodePing,
  encodeRst,
  encodeSettings,
  ErrorCode,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  parseSettings,
  parseWindowUpdate,
  Setting,
  unpad,
} from "../../lib/http2/frame.ts";
import { HpackDecoder, HpackEncoder } from "../../lib/http2/hpack.ts";
import type { CertPair } from "./pki.ts";

export type H2Mode = "no-window" | "flood" | "rapid-reset";

export interface HostileH2 {
  url: string;
  /** Streams opened by lite-apiserver, and reset by us. */
  readonly streams: number;
  readonly resets: number;
  close(): Promise<void>;
}

const enc = new TextEncoder();
const PREFACE_LEN = 24;
const NODE = enc.encode(
  '{"kind":"Node","apiVersion":"v1","metadata":{"name":"edge-1","resourceVersion":"1"}}',
);
const OK = enc.encode("ok");
/** The health checker's probe (and its kin, and /version: the bench's listener probe) is answered. */
const HEALTH = new Set(["/readyz", "/healthz", "/livez", "/version"]);
const EVENT = (() => {
  const data = "x".repeat(64 * 1024);
  return (rv: number) =>
    enc.encode(
      `{"type":"MODIFIED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big",` +
        `"namespace":"flood","resourceVersion":"${rv}"},"data":{"x":"${data}"}}}\n`,
    );
})();

interface FloodStream {
  id: number;
  window: number;
  /** Bytes of the current event not sent yet. */
  rest: Uint8Array;
  rv: number;
}

export function startHostileH2(pair: CertPair, mode: H2Mode): HostileH2 {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: pair.certPem,
    key: pair.keyPem,
    alpnProtocols: ["h2"],
  });
  const conns = new Set<Deno.Conn>();
  let streams = 0, resets = 0;

  const serve = async (c: Deno.Conn) => {
    let closed = false;
    // Writes go out one after the other (a write in progress is awaited before the next).
    let writing: Promise<unknown> = Promise.resolve();
    const write = (b: Uint8Array) => {
      writing = writing.then(async () => {
        for (let o = 0; o < b.length && !closed;) o += await c.write(b.subarray(o));
      }).catch(() => {
        closed = true;
      });
      return writing;
    };
    const dec = new HpackDecoder();
    const henc = new HpackEncoder();
    let connWindow = 65_535;
    let peerInitial = 65_535;
    const flooding = new Map<number, FloodStream>();
    let wake: (() => void) | undefined;
    const kick = () => {
      wake?.();
      wake = undefined;
    };
    let block: { id: number; parts: Uint8Array[] } | undefined;
    let nth = 0;

    const head = (id: number, end: boolean, extra: [string, string][] = []) =>
      write(
        encodeFrame(
          FrameType.HEADERS,
          Flag.END_HEADERS | (end ? Flag.END_STREAM : 0),
          id,
          henc.encode([[":status", "200"], ["content-type", "application/json"], ...extra]),
        ),
      );

    const onHeaders = (id: number, block: Uint8Array) => {
      const fields = dec.decode(block);
      const path = fields.find(([n]) => n === ":path")?.[1] ?? "";
      streams++;
      const plain = path.split("?")[0];
      if (plain === "/api/v1/nodes/edge-1" || HEALTH.has(plain)) {
        const body = plain === "/api/v1/nodes/edge-1" ? NODE : OK;
        head(id, false, [["content-length", String(body.length)]]);
        write(encodeFrame(FrameType.DATA, Flag.END_STREAM, id, body));
        return;
      }
      if (mode === "no-window") return; // never answered, its body never let out
      if (mode === "rapid-reset") {
        resets++;
        const k = nth++ % 3;
        if (k === 2) {
          head(id, false);
          write(encodeFrame(FrameType.DATA, 0, id, EVENT(1).subarray(0, 1024)));
        }
        write(encodeRst(id, k === 0 ? ErrorCode.REFUSED_STREAM : ErrorCode.CANCEL));
        return;
      }
      head(id, false);
      flooding.set(id, { id, window: peerInitial, rest: EVENT(1), rv: 1 });
      kick();
    };

    const onFrame = (f: Frame) => {
      switch (f.type) {
        case FrameType.SETTINGS: {
          if (f.flags & Flag.ACK) return;
          for (const [k, v] of parseSettings(f)) {
            if (k === Setting.INITIAL_WINDOW_SIZE) {
              for (const s of flooding.values()) s.window += v - peerInitial;
              peerInitial = v;
            }
          }
          write(encodeSettings([], true));
          return kick();
        }
        case FrameType.PING:
          if (!(f.flags & Flag.ACK)) write(encodePing(f.payload, true));
          return;
        case FrameType.WINDOW_UPDATE: {
          const inc = parseWindowUpdate(f);
          if (f.stream === 0) connWindow += inc;
          else {
            const s = flooding.get(f.stream);
            if (s) s.window += inc;
          }
          return kick();
        }
        case FrameType.HEADERS:
          block = { id: f.stream, parts: [unpad(f).slice()] };
          if (f.flags & Flag.END_HEADERS) onHeaders(f.stream, block.parts[0]);
          return;
        case FrameType.CONTINUATION: {
          if (!block) return;
          block.parts.push(f.payload.slice());
          if (f.flags & Flag.END_HEADERS) {
            const all = new Uint8Array(block.parts.reduce((n, p) => n + p.length, 0));
            let o = 0;
            for (const p of block.parts) all.set(p, o), o += p.length;
            onHeaders(block.id, all);
          }
          return;
        }
        case FrameType.RST_STREAM:
          flooding.delete(f.stream);
          return;
          // DATA: request bodies are read and dropped, and no window is ever given back for them.
      }
    };

    // The flood: DATA frames on every open stream, as far as the windows allow.
    const pump = async () => {
      while (!closed) {
        let sent = false;
        for (const s of flooding.values()) {
          const n = Math.min(16_384, s.window, connWindow, s.rest.length);
          if (n <= 0) continue;
          s.window -= n;
          connWindow -= n;
          await write(encodeFrame(FrameType.DATA, 0, s.id, s.rest.subarray(0, n)));
          s.rest = s.rest.subarray(n);
          if (!s.rest.length) s.rest = EVENT(++s.rv);
          sent = true;
        }
        if (!sent) await new Promise<void>((r) => wake = r);
      }
    };
    if (mode === "flood") pump();

    const settings: [number, number][] = [[Setting.MAX_CONCURRENT_STREAMS, 250]];
    if (mode === "no-window") settings.push([Setting.INITIAL_WINDOW_SIZE, 0]);
    write(encodeSettings(settings));
    const reader = new FrameReader(16_384, onFrame);
    const buf = new Uint8Array(64 * 1024);
    let preface = PREFACE_LEN;
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        if (preface > 0) {
          const skip = Math.min(preface, chunk.length);
          preface -= skip;
          chunk = chunk.subarray(skip);
        }
        reader.feed(chunk);
      }
    } finally {
      closed = true;
      kick();
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

  return {
    url: `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get streams() {
      return streams;
    },
    get resets() {
      return resets;
    },
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}
