/**
 * Reads whole messages (head, body, trailers) from a byte stream with the codec: the composition a
 * connection loop performs, kept small and synchronous. Used by tests and by anything that needs
 * complete messages rather than streamed ones.
 */
import { type BodyDecoder, ChunkedDecoder, CloseDecoder, LengthDecoder } from "./body.ts";
import { HttpError } from "./errors.ts";
import {
  type HeadLimits,
  NEED_MORE,
  type RequestHead,
  RequestHeadParser,
  type ResponseHead,
  ResponseHeadParser,
} from "./head_parser.ts";
import type { HeaderMap } from "./headers.ts";

/** A message read whole. */
export interface Message<H> {
  head: H;
  body: Uint8Array;
  trailers?: HeaderMap;
}

/**
 * Collects complete messages from chunks pushed in order. `kind` "response" takes the method of
 * each request answered (for HEAD) from `methods`, in order.
 */
export class MessageReader<H extends RequestHead | ResponseHead> {
  readonly messages: Message<H>[] = [];
  error: HttpError | undefined;
  private parser: RequestHeadParser | ResponseHeadParser;
  private head: H | undefined;
  private decoder: BodyDecoder | undefined;
  private parts: Uint8Array[] = [];

  constructor(
    kind: H extends RequestHead ? "request" : "response",
    limits?: Partial<HeadLimits>,
    private methods: string[] = [],
  ) {
    this.parser = kind === "request" ? new RequestHeadParser(limits) : new ResponseHeadParser(limits);
    this.expectNext();
  }

  private expectNext(): void {
    if (this.parser instanceof ResponseHeadParser) this.parser.expect(this.methods.shift() ?? "GET");
  }

  /** Pushes the next bytes; returns false once an error stopped the reader. */
  push(buf: Uint8Array): boolean {
    let pos = 0;
    while (!this.error && (pos < buf.length || this.decoder?.done)) {
      if (!this.head) {
        const r = this.parser.feed(buf, pos);
        if (r instanceof HttpError) {
          this.error = r;
          break;
        }
        if (r === NEED_MORE) break;
        pos = r;
        const head = this.parser.head as H;
        if ("informational" in head && head.informational) {
          this.messages.push({ head, body: new Uint8Array() });
          continue;
        }
        this.head = head;
        this.parts = [];
        const onData = (c: Uint8Array) => this.parts.push(c.slice());
        this.decoder = head.body === "length"
          ? new LengthDecoder(head.contentLength, onData)
          : head.body === "chunked"
          ? new ChunkedDecoder(onData)
          : head.body === "close"
          ? new CloseDecoder(onData)
          : undefined;
        if (!this.decoder) this.complete();
        continue;
      }
      const r = this.decoder!.feed(buf, pos);
      if (r instanceof HttpError) {
        this.error = r;
        break;
      }
      pos = r;
      if (this.decoder!.done) this.complete();
    }
    return !this.error;
  }

  /** The stream ended: completes a close-delimited body. */
  end(): void {
    if (this.decoder instanceof CloseDecoder) {
      this.decoder.end();
      this.complete();
    }
  }

  private complete(): void {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const body = new Uint8Array(total);
    let o = 0;
    for (const p of this.parts) {
      body.set(p, o);
      o += p.length;
    }
    const trailers = this.decoder instanceof ChunkedDecoder ? this.decoder.trailers : undefined;
    this.messages.push({ head: this.head!, body, trailers });
    this.head = undefined;
    this.decoder = undefined;
    this.expectNext();
  }
}
