/**
 * Wire modes of the simulated apiserver: how an answer's bytes are cut into writes and spaced in
 * time, the way real servers and networks deliver them (head and body in separate segments, a body
 * dribbled in small segments, a Nagle-like delay before the last segment, chunked instead of
 * Content-Length, gzip for large answers). Planning is pure (bytes + delays), so it is unit-tested
 * exactly; `wire_relay.ts` writes the plan to a socket.
 */
import { gzipSync } from "node:zlib";
import { header, type MessageHead } from "./http_reader.ts";

/** How answers go on the wire. Every field is optional; `{}` writes each answer in one piece. */
export interface WireMode {
  /** The head goes in a write of its own; the body follows this many ms later. */
  headGapMs?: number;
  /** The body goes in segments of (at least) this many bytes ... */
  segmentBytes?: number;
  /** ... with this gap between them. */
  segmentGapMs?: number;
  /** Nagle-like: the last `tailBytes` of each body (default 64) are written this many ms later. */
  lastSegmentDelayMs?: number;
  tailBytes?: number;
  /** Body framing sent to the client: as the server framed it (default), or forced. */
  framing?: "as-is" | "length" | "chunked";
  /** gzip 200 answers of at least `gzipMinBytes` when the request accepts gzip (not watches). */
  gzip?: boolean;
  /** Default 128 KiB, the kube-apiserver's threshold. */
  gzipMinBytes?: number;
}

/** Named presets, the ones the e2e suite runs in. */
export const WIRE_MODES = {
  /** One write per answer (what the simulated apiserver always did). */
  gentle: {},
  /** Head, then the body 40 ms later (Python's http.server; a body in a later TCP segment). */
  split: { headGapMs: 40 },
  /** Head alone, then the body in 512-byte segments 3 ms apart. */
  dribble: { headGapMs: 5, segmentBytes: 512, segmentGapMs: 3 },
  /** Head and most of the body at once, the last 64 bytes 40 ms later (Nagle + delayed ACK). */
  nagle: { lastSegmentDelayMs: 40 },
  /** Re-framed as chunked (as the apiserver sends large lists), head and chunks in separate writes. */
  chunked: { framing: "chunked", headGapMs: 20, segmentBytes: 4096, segmentGapMs: 2 },
  /** Large answers gzip-compressed and chunked (as the apiserver), head alone. */
  gzip: { gzip: true, framing: "chunked", headGapMs: 20, segmentBytes: 8192, segmentGapMs: 2 },
} as const satisfies Record<string, WireMode>;

export type WireModeName = keyof typeof WIRE_MODES;

/** Resolves a name or a mode. */
export function wireMode(m: WireMode | WireModeName): WireMode {
  return typeof m === "string" ? WIRE_MODES[m] : m;
}

/** One write: `bytes`, `delayMs` after the previous one. */
export interface Piece {
  delayMs: number;
  bytes: Uint8Array;
}

/** Bodies are never cut in more than this many segments (large lists get larger segments). */
const MAX_SEGMENTS = 64;
const enc = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

/** The head as bytes, without the framing headers named in `drop`, plus `add`. */
export function serializeHead(
  head: MessageHead,
  drop: string[] = [],
  add: [string, string][] = [],
): Uint8Array {
  const skip = new Set(drop.map((d) => d.toLowerCase()));
  const lines = [head.startLine];
  for (const [k, v] of head.headers) if (!skip.has(k.toLowerCase())) lines.push(`${k}: ${v}`);
  for (const [k, v] of add) lines.push(`${k}: ${v}`);
  return enc.encode(lines.join("\r\n") + "\r\n\r\n");
}

/** Cuts `body` into the mode's segments, each with the delay before it. */
function segments(body: Uint8Array, mode: WireMode, firstDelay: number): Piece[] {
  if (body.length === 0) return [];
  const size = mode.segmentBytes
    ? Math.max(mode.segmentBytes, Math.ceil(body.length / MAX_SEGMENTS))
    : body.length;
  const out: Piece[] = [];
  for (let o = 0; o < body.length; o += size) {
    out.push({ delayMs: o === 0 ? firstDelay : mode.segmentGapMs ?? 0, bytes: body.subarray(o, o + size) });
  }
  if (mode.lastSegmentDelayMs) {
    const last = out.pop()!;
    const tail = Math.min(mode.tailBytes ?? 64, last.bytes.length);
    if (last.bytes.length > tail) out.push({ delayMs: last.delayMs, bytes: last.bytes.subarray(0, -tail) });
    out.push({ delayMs: mode.lastSegmentDelayMs, bytes: last.bytes.subarray(last.bytes.length - tail) });
  }
  return out;
}

const chunk = (b: Uint8Array) => concat(enc.encode(`${b.length.toString(16)}\r\n`), b, enc.encode("\r\n"));
const LAST_CHUNK = enc.encode("0\r\n\r\n");

/** Joins pieces written with no delay between them into one write. */
function coalesce(pieces: Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    const prev = out[out.length - 1];
    if (prev && p.delayMs === 0) prev.bytes = concat(prev.bytes, p.bytes);
    else out.push({ ...p });
  }
  return out;
}

/** Options of a whole (buffered) answer. */
export interface AnswerContext {
  /** The request accepts gzip. */
  acceptGzip: boolean;
  /** The answer has no body whatever its headers (HEAD, 204, 304). */
  bodyless: boolean;
  /** How the server framed it. */
  framing: "length" | "chunked";
}

/** Plans the writes of a whole answer whose body is known. */
export function planAnswer(head: MessageHead, body: Uint8Array, mode: WireMode, ctx: AnswerContext): Piece[] {
  if (ctx.bodyless) return [{ delayMs: 0, bytes: serializeHead(head) }];
  const drop = ["content-length", "transfer-encoding"];
  const add: [string, string][] = [];
  let framing = mode.framing && mode.framing !== "as-is" ? mode.framing : ctx.framing;
  if (
    mode.gzip && ctx.acceptGzip && head.status === 200 && !header(head, "content-encoding") &&
    body.length >= (mode.gzipMinBytes ?? 128 * 1024)
  ) {
    body = new Uint8Array(gzipSync(body));
    add.push(["Content-Encoding", "gzip"], ["Vary", "Accept-Encoding"]);
    if (!mode.framing || mode.framing === "as-is") framing = "chunked";
  }
  add.push(
    framing === "chunked" ? ["Transfer-Encoding", "chunked"] : ["Content-Length", String(body.length)],
  );
  const headPiece: Piece = { delayMs: 0, bytes: serializeHead(head, drop, add) };
  const segs = segments(body, mode, mode.headGapMs ?? 0);
  if (framing === "chunked") {
    for (const s of segs) s.bytes = chunk(s.bytes);
    if (segs.length) segs[segs.length - 1].bytes = concat(segs[segs.length - 1].bytes, LAST_CHUNK);
    else segs.push({ delayMs: mode.headGapMs ?? 0, bytes: LAST_CHUNK });
  }
  return coalesce([headPiece, ...segs]);
}

/** Plans the head of a streamed answer (a watch): always chunked, since its length is unknown. */
export function planStreamHead(head: MessageHead, chunked: boolean): Piece[] {
  return [{
    delayMs: 0,
    bytes: chunked
      ? serializeHead(head, ["content-length", "transfer-encoding"], [["Transfer-Encoding", "chunked"]])
      : serializeHead(head),
  }];
}

/** Plans one piece of streamed body data as it arrived from the server. */
export function planStreamData(data: Uint8Array, mode: WireMode, chunked: boolean, first: boolean): Piece[] {
  const segs = segments(data, mode, first ? mode.headGapMs ?? 0 : 0);
  if (chunked) { for (const s of segs) s.bytes = chunk(s.bytes); }
  return coalesce(segs);
}

/** The end of a streamed answer. */
export function planStreamEnd(chunked: boolean): Piece[] {
  return chunked ? [{ delayMs: 0, bytes: LAST_CHUNK }] : [];
}
