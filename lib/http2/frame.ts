/**
 * HTTP/2 frames (RFC 9113 section 4 and 6): encoding, and a reader that cuts a byte stream split
 * anywhere into whole frames. The reader holds at most one frame (9 + maxFrameSize bytes): a frame
 * announcing more is a FRAME_SIZE_ERROR before any of its payload is buffered.
 */

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 section 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export const CLIENT_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const DEFAULT_WINDOW = 65_535;
export const MAX_WINDOW = 0x7fffffff;

/**
 * A protocol violation. `stream` 0 is a connection error (GOAWAY and close); otherwise only that
 * stream is reset. `code` is the node-style error code the proxy logs.
 */
export class H2Error extends Error {
  readonly code = "EPROTO";
  constructor(readonly h2code: number, message: string, readonly stream = 0) {
    super(message);
    this.name = "H2Error";
  }
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Uint8Array;
}

export function encodeFrame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(0),
) {
  const out = new Uint8Array(9 + payload.byteLength);
  const n = payload.byteLength;
  out[0] = (n >>> 16) & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = n & 0xff;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, stream & 0x7fffffff);
  out.set(payload, 9);
  return out;
}

export function encodeSettings(settings: [number, number][], ack = false): Uint8Array {
  const p = new Uint8Array(settings.length * 6);
  const v = new DataView(p.buffer);
  settings.forEach(([id, value], i) => {
    v.setUint16(i * 6, id);
    v.setUint32(i * 6 + 2, value);
  });
  return encodeFrame(FrameType.SETTINGS, ack ? Flag.ACK : 0, 0, p);
}

export function parseSettings(f: Frame): [number, number][] {
  if (f.stream !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
  if (f.flags & Flag.ACK) {
    if (f.payload.byteLength) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
    return [];
  }
  if (f.payload.byteLength % 6) {
    throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6");
  }
  const v = view(f.payload);
  const out: [number, number][] = [];
  for (let i = 0; i < f.payload.byteLength; i += 6) {
    const id = v.getUint16(i);
    const value = v.getUint32(i + 2);
    if (id === Setting.ENABLE_PUSH && value > 1) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH > 1");
    }
    if (id === Setting.INITIAL_WINDOW_SIZE && value > MAX_WINDOW) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1");
    }
    if (id === Setting.MAX_FRAME_SIZE && (value < 16_384 || value > 16_777_215)) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
    }
    out.push([id, value]);
  }
  return out;
}

export function encodePing(data: Uint8Array, ack = false): Uint8Array {
  return encodeFrame(FrameType.PING, ack ? Flag.ACK : 0, 0, data);
}

export function encodeGoaway(lastStream: number, code: number, debug = ""): Uint8Array {
  const d = new TextEncoder().encode(debug);
  const p = new Uint8Array(8 + d.byteLength);
  const v = view(p);
  v.setUint32(0, lastStream & 0x7fffffff);
  v.setUint32(4, code);
  p.set(d, 8);
  return encodeFrame(FrameType.GOAWAY, 0, 0, p);
}

export function parseGoaway(f: Frame): { lastStream: number; code: number; debug: string } {
  if (f.stream !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
  if (f.payload.byteLength < 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY too short");
  const v = view(f.payload);
  const debug = new TextDecoder().decode(f.payload.subarray(8, 8 + 256));
  return { lastStream: v.getUint32(0) & 0x7fffffff, code: v.getUint32(4), debug };
}

export function encodeRst(stream: number, code: number): Uint8Array {
  const p = new Uint8Array(4);
  view(p).setUint32(0, code);
  return encodeFrame(FrameType.RST_STREAM, 0, stream, p);
}

export function encodeWindowUpdate(stream: number, increment: number): Uint8Array {
  const p = new Uint8Array(4);
  view(p).setUint32(0, increment & 0x7fffffff);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, stream, p);
}

export function parseWindowUpdate(f: Frame): number {
  if (f.payload.byteLength !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length not 4");
  return view(f.payload).getUint32(0) & 0x7fffffff;
}

export function parseRst(f: Frame): number {
  if (f.stream === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
  if (f.payload.byteLength !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length not 4");
  return view(f.payload).getUint32(0);
}

/**
 * The payload of a DATA or HEADERS frame without padding (and, for HEADERS, without the priority
 * fields). `padding` is what flow control still counts.
 */
export function unpad(f: Frame): Uint8Array {
  let p = f.payload;
  let start = 0;
  let pad = 0;
  if (f.flags & Flag.PADDED) {
    if (p.byteLength < 1) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "padded frame without a pad length");
    pad = p[0];
    start = 1;
  }
  if (f.type === FrameType.HEADERS && f.flags & Flag.PRIORITY) start += 5;
  if (start + pad > p.byteLength) {
    throw new H2Error(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame");
  }
  p = p.subarray(start, p.byteLength - pad);
  return p;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Cuts bytes into frames. Feed it chunks as they arrive; each whole frame goes to `onFrame`.
 * Throws H2Error (a connection error) on a frame longer than `maxFrameSize`.
 */
export class FrameReader {
  #head = new Uint8Array(9);
  #headLen = 0;
  #payload?: Uint8Array;
  #payloadLen = 0;
  #type = 0;
  #flags = 0;
  #stream = 0;

  constructor(public maxFrameSize = DEFAULT_MAX_FRAME_SIZE, private onFrame: (f: Frame) => void) {}

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.byteLength) {
      if (!this.#payload) {
        const take = Math.min(9 - this.#headLen, chunk.byteLength - i);
        this.#head.set(chunk.subarray(i, i + take), this.#headLen);
        this.#headLen += take;
        i += take;
        if (this.#headLen < 9) return;
        const h = this.#head;
        const len = (h[0] << 16) | (h[1] << 8) | h[2];
        if (len > this.maxFrameSize) {
          throw new H2Error(
            ErrorCode.FRAME_SIZE_ERROR,
            `frame of ${len} bytes over the ${this.maxFrameSize} allowed`,
          );
        }
        this.#type = h[3];
        this.#flags = h[4];
        this.#stream = view(h).getUint32(5) & 0x7fffffff;
        this.#headLen = 0;
        // A whole frame already in this chunk is handed over without a copy.
        if (chunk.byteLength - i >= len) {
          const payload = chunk.subarray(i, i + len);
          i += len;
          this.onFrame({ type: this.#type, flags: this.#flags, stream: this.#stream, payload });
          continue;
        }
        this.#payload = new Uint8Array(len);
        this.#payloadLen = 0;
        continue;
      }
      const p = this.#payload;
      const take = Math.min(p.byteLength - this.#payloadLen, chunk.byteLength - i);
      p.set(chunk.subarray(i, i + take), this.#payloadLen);
      this.#payloadLen += take;
      i += take;
      if (this.#payloadLen === p.byteLength) {
        this.#payload = undefined;
        this.onFrame({ type: this.#type, flags: this.#flags, stream: this.#stream, payload: p });
      }
    }
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.#payload ? this.#payloadLen + 9 : this.#headLen;
  }
}
