/**
 * Finds whole watch events in a relayed watch stream, so that a watch the proxy ends (its client
 * cannot keep up) ends after the last whole event, as the kube-apiserver ends one: the client
 * decodes every event it got and re-watches from the last one's resourceVersion. Two framings:
 * JSON (and Table) watches are one event per line; protobuf watches are frames with a 4-byte
 * big-endian length. Bytes of an unfinished event are held until it is whole, at most `maxHeld`:
 * past that the splitter gives up (hands out what it holds and passes on everything after as it
 * comes), and the stream can only be cut, not ended cleanly.
 */
const NEWLINE = 0x0a;

export type WatchFraming = "lines" | "length-prefixed";

/**
 * The framing of a watch answer from its headers; undefined when the proxy cannot find event
 * boundaries (an encoded body, another media type).
 */
export function watchFramingOf(
  headers: Record<string, string | number | string[] | undefined>,
): WatchFraming | undefined {
  const encoding = String(headers["content-encoding"] ?? "").toLowerCase();
  if (encoding && encoding !== "identity") return undefined;
  const type = String(headers["content-type"] ?? "").toLowerCase();
  if (/^application\/json\b/.test(type)) return "lines";
  if (/^application\/vnd\.kubernetes\.protobuf\b/.test(type)) return "length-prefixed";
  return undefined;
}

export class WatchFrames {
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** Protobuf: bytes left in the current frame (-1: in its length prefix). */
  #frameLeft = -1;
  #prefix = 0;
  #prefixBytes = 0;
  #gaveUp = false;

  constructor(private readonly framing: WatchFraming, private readonly maxHeld: number) {}

  /** Bytes of an unfinished event held back. */
  get held(): number {
    return this.#heldBytes;
  }

  /** Event boundaries are still known: the stream can be ended cleanly after what was handed out. */
  get whole(): boolean {
    return !this.#gaveUp;
  }

  /** The next bytes to relay: every whole event completed by `chunk` (empty when none). */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#gaveUp) return chunk;
    const end = this.framing === "lines" ? chunk.lastIndexOf(NEWLINE) + 1 : this.#frameEnd(chunk);
    const out = end === 0 ? new Uint8Array() : this.#take(chunk.subarray(0, end));
    if (end < chunk.byteLength) this.#hold(chunk.subarray(end));
    if (this.#heldBytes <= this.maxHeld) return out;
    // An event larger than the bound: passed on as it comes; this watch can now only be cut.
    this.#gaveUp = true;
    const held = this.flush();
    return out.byteLength === 0 ? held : Buffer.concat([out, held], out.byteLength + held.byteLength);
  }

  /** Hands out what is held (the stream ended: its last bytes go as they are). */
  flush(): Uint8Array {
    return this.#take(new Uint8Array());
  }

  /** Drops what is held (the watch ends here). */
  drop(): void {
    this.#held = [];
    this.#heldBytes = 0;
  }

  #hold(bytes: Uint8Array) {
    // A copy: the chunk's buffer may be reused by its producer.
    this.#held.push(bytes.slice());
    this.#heldBytes += bytes.byteLength;
  }

  #take(tail: Uint8Array): Uint8Array {
    if (this.#heldBytes === 0) return tail;
    const out = Buffer.concat([...this.#held, tail], this.#heldBytes + tail.byteLength);
    this.drop();
    return out;
  }

  /** Protobuf: the offset in `chunk` just after the last frame it completes (0: none). */
  #frameEnd(chunk: Uint8Array): number {
    let end = 0;
    let i = 0;
    while (i < chunk.byteLength) {
      if (this.#frameLeft < 0) {
        this.#prefix = this.#prefix * 256 + chunk[i++];
        if (++this.#prefixBytes < 4) continue;
        this.#frameLeft = this.#prefix;
        this.#prefix = 0;
        this.#prefixBytes = 0;
        if (this.#frameLeft === 0) {
          this.#frameLeft = -1;
          end = i;
        }
        continue;
      }
      const take = Math.min(this.#frameLeft, chunk.byteLength - i);
      i += take;
      this.#frameLeft -= take;
      if (this.#frameLeft === 0) {
        this.#frameLeft = -1;
        end = i;
      }
    }
    return end;
  }
}
