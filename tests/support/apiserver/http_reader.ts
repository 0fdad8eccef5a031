/**
 * An incremental HTTP/1.1 message reader for the wire relay: splits a byte stream into message heads
 * and body data (Content-Length, chunked, or until close), whatever the segmentation. Test support
 * only: it trusts its peer (the simulated apiserver or a real client) and is not hardened.
 */

/** A parsed start line and headers. */
export interface MessageHead {
  /** The start line without CRLF ("GET / HTTP/1.1" or "HTTP/1.1 200 OK"). */
  startLine: string;
  /** Header lines as sent, in order. */
  headers: [string, string][];
  /** Response status (0 for requests). */
  status: number;
  /** Request method ("" for responses). */
  method: string;
}

/** What the reader found in the bytes pushed so far. */
export type ReadEvent =
  | { type: "head"; head: MessageHead; framing: Framing }
  | { type: "data"; bytes: Uint8Array }
  | { type: "end" }
  /** Everything after this (a 101 answer or its request) is a raw tunnel. */
  | { type: "upgrade"; rest: Uint8Array };

/** How a message's body is delimited. */
export type Framing = "none" | "length" | "chunked" | "close";

type State = "head" | "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailers" | "close" | "raw";

/** Value of the first header named `name` (case-insensitive). */
export function header(head: MessageHead, name: string): string | undefined {
  const n = name.toLowerCase();
  return head.headers.find(([k]) => k.toLowerCase() === n)?.[1];
}

const CRLF2 = [13, 10, 13, 10];

function indexOfSeq(buf: Uint8Array, seq: number[], from = 0): number {
  outer: for (let i = from; i <= buf.length - seq.length; i++) {
    for (let j = 0; j < seq.length; j++) if (buf[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Parses a head block (without the final blank line). */
export function parseHead(text: string): MessageHead {
  const lines = text.split("\r\n");
  const startLine = lines[0];
  const headers: [string, string][] = [];
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(l)}`);
    headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
  }
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(startLine);
  if (status) return { startLine, headers, status: Number(status[1]), method: "" };
  const req = /^([A-Z]+) \S+ HTTP\/1\.[01]$/.exec(startLine);
  if (!req) throw new Error(`bad start line: ${JSON.stringify(startLine)}`);
  return { startLine, headers, status: 0, method: req[1] };
}

/**
 * Reads one direction of a connection. `bodyless(head)` says when a response has no body whatever
 * its headers (answers to HEAD, 1xx, 204, 304); requests without a length have none.
 */
export class MessageReader {
  private buf: Uint8Array = new Uint8Array(0);
  private state: State = "head";
  private left = 0;

  constructor(private readonly bodyless: (head: MessageHead) => boolean = () => false) {}

  /** Feeds bytes; returns the events they complete. */
  push(bytes: Uint8Array): ReadEvent[] {
    const out: ReadEvent[] = [];
    if (this.state === "raw") return bytes.length ? [{ type: "data", bytes }] : [];
    this.buf = concat(this.buf, bytes);
    for (;;) {
      const before = this.buf.length;
      const st: State = this.state;
      this.step(out);
      if ((this.state as State) === "raw") break;
      if (this.buf.length === before && this.state === st) break;
    }
    return out;
  }

  /** The peer closed: ends a close-delimited body. */
  close(): ReadEvent[] {
    return this.state === "close" ? [{ type: "end" }] : [];
  }

  private take(n: number): Uint8Array {
    const b = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return b;
  }

  private step(out: ReadEvent[]): void {
    switch (this.state) {
      case "head": {
        const end = indexOfSeq(this.buf, CRLF2);
        if (end < 0) return;
        const text = new TextDecoder().decode(this.take(end));
        this.take(4);
        const head = parseHead(text);
        const framing = this.framingOf(head);
        out.push({ type: "head", head, framing });
        // A 101 answer, or a request asking for an upgrade: what follows is not HTTP any more.
        if (head.status === 101 || (head.status === 0 && header(head, "upgrade") !== undefined)) {
          this.state = "raw";
          out.push({ type: "upgrade", rest: this.take(this.buf.length) });
          return;
        }
        if (framing === "none") out.push({ type: "end" });
        else if (framing === "length") {
          this.left = Number(header(head, "content-length"));
          this.state = "length";
          if (this.left === 0) out.push({ type: "end" }), this.state = "head";
        } else if (framing === "chunked") this.state = "chunk-size";
        else this.state = "close";
        return;
      }
      case "length": {
        if (this.buf.length === 0) return;
        const n = Math.min(this.left, this.buf.length);
        out.push({ type: "data", bytes: this.take(n) });
        this.left -= n;
        if (this.left === 0) out.push({ type: "end" }), this.state = "head";
        return;
      }
      case "chunk-size": {
        const nl = indexOfSeq(this.buf, [13, 10]);
        if (nl < 0) return;
        const line = new TextDecoder().decode(this.take(nl)).split(";")[0].trim();
        this.take(2);
        if (!/^[0-9a-fA-F]+$/.test(line)) throw new Error(`bad chunk size: ${JSON.stringify(line)}`);
        this.left = parseInt(line, 16);
        this.state = this.left === 0 ? "trailers" : "chunk-data";
        return;
      }
      case "chunk-data": {
        if (this.buf.length === 0) return;
        const n = Math.min(this.left, this.buf.length);
        out.push({ type: "data", bytes: this.take(n) });
        this.left -= n;
        if (this.left === 0) this.state = "chunk-crlf";
        return;
      }
      case "chunk-crlf": {
        if (this.buf.length < 2) return;
        this.take(2);
        this.state = "chunk-size";
        return;
      }
      case "trailers": {
        const nl = indexOfSeq(this.buf, [13, 10]);
        if (nl < 0) return;
        this.take(nl + 2);
        if (nl === 0) out.push({ type: "end" }), this.state = "head";
        return;
      }
      case "close": {
        if (this.buf.length) out.push({ type: "data", bytes: this.take(this.buf.length) });
        return;
      }
    }
  }

  private framingOf(head: MessageHead): Framing {
    if (head.status !== 0 && this.bodyless(head)) return "none";
    if (head.status === 101 || (head.status >= 100 && head.status < 200) || head.status === 204) {
      return "none";
    }
    if (head.status === 304) return "none";
    if (/chunked/i.test(header(head, "transfer-encoding") ?? "")) return "chunked";
    if (header(head, "content-length") !== undefined) return "length";
    return head.status === 0 ? "none" : "close";
  }
}
