/**
 * The request side of one server exchange: the part of Node's `IncomingMessage` the proxy uses
 * (method, url, headers, rawHeaders, httpVersion, socket, and the body as a Readable that can be
 * piped). The body is pulled from the socket as it is read: a slow reader pauses the socket.
 */
import { Readable } from "node:stream";
import type { Duplex } from "node:stream";
import type { RequestHead } from "./head_parser.ts";
import type { HeaderMap } from "./headers.ts";

/** What the request body stream asks of its connection. */
export interface BodySource {
  /** The reader wants more: resume the socket (and send 100 Continue the first time). */
  pull(): void;
}

/** A request received on a connection we serve. */
export class ServerRequest extends Readable {
  readonly method: string;
  readonly url: string;
  readonly headers: HeaderMap;
  readonly rawHeaders: string[];
  readonly httpVersion: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  readonly socket: Duplex;
  /** The whole body has arrived. */
  complete = false;
  /** The connection closed before the body was complete. */
  aborted = false;
  #source: BodySource;

  constructor(head: RequestHead, socket: Duplex, source: BodySource) {
    super({ highWaterMark: 64 * 1024 });
    this.method = head.method;
    this.url = head.url;
    this.headers = head.headers;
    this.rawHeaders = head.rawHeaders;
    this.httpVersion = head.httpVersion;
    this.httpVersionMinor = head.versionMinor;
    this.socket = socket;
    this.#source = source;
  }

  override _read(): void {
    this.#source.pull();
  }

  /** The body ended. */
  finishBody(): void {
    this.complete = true;
    this.push(null);
  }

  /** The connection went away (or broke the protocol) before the body was complete. */
  abort(err?: Error): void {
    if (this.complete || this.destroyed) return;
    this.aborted = true;
    this.emit("aborted");
    // As Node: an 'error' only for those listening for one, never an uncaught one.
    this.destroy(err && this.listenerCount("error") > 0 ? err : undefined);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    cb(err);
  }
}
