/**
 * An upstream answer as the proxy sees it: status and headers, and the body as a readable stream
 * whose backpressure reaches the upstream socket. Shaped like node:http's IncomingMessage where the
 * proxy and the cache tap use it (statusCode, headers, "aborted" when the body is cut short).
 */
import { Readable } from "node:stream";
import type { HeaderMap } from "../http/headers.ts";
import type { ResponseHead } from "../http/head_parser.ts";

export class UpstreamResponse extends Readable {
  readonly statusCode: number;
  readonly statusMessage: string;
  /** Lower-cased names; repeated headers joined as node:http does (set-cookie kept as an array). */
  readonly headers: HeaderMap;
  /** Names and values as received, alternating. */
  readonly rawHeaders: string[];
  /** The whole body arrived. */
  complete = false;
  /**
   * The body runs to the connection's close, which cannot be told from a truncation here
   * (connection.ts): such an answer always ends "aborted", never complete.
   */
  readonly closeDelimited: boolean;
  #pull: () => void;

  constructor(head: ResponseHead, pull: () => void) {
    super({ highWaterMark: 64 * 1024 });
    this.statusCode = head.statusCode;
    this.statusMessage = head.statusMessage;
    this.headers = head.headers;
    this.rawHeaders = head.rawHeaders;
    this.closeDelimited = head.body === "close";
    this.#pull = pull;
  }

  override _read(): void {
    this.#pull();
  }

  /** The whole body, once it has arrived (`complete`) and nothing has been read yet. */
  readWhole(): Uint8Array {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (let c = this.read() as Uint8Array | null; c !== null; c = this.read() as Uint8Array | null) {
      chunks.push(c);
      size += c.byteLength;
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
  }

  /** The body ended early (the connection failed): "aborted", then close without "end". */
  abort(): void {
    if (this.complete || this.destroyed) return;
    this.emit("aborted");
    this.destroy();
  }
}
