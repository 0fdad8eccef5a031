/**
 * Splits a byte stream into lines (watch events are one JSON object per line), holding at most
 * `maxLine` bytes of an unfinished line: a longer line ends the splitting (`overflow`), so a
 * hostile or broken upstream cannot make the cache buffer without bound. Newlines are searched in
 * each new chunk only, never again in what is held.
 */
const NEWLINE = 0x0a;
const dec = new TextDecoder();

export class LineSplitter {
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  #stopped = false;

  constructor(
    private readonly maxLine: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (heldBytes: number) => void,
  ) {}

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Part of a line is held (the stream stopped in the middle of a line). */
  get holding(): boolean {
    return this.#heldBytes > 0;
  }

  /** Drops what is held and ignores what follows. */
  stop(): void {
    this.#stopped = true;
    this.#held = [];
    this.#heldBytes = 0;
  }

  push(chunk: Uint8Array): void {
    if (this.#stopped) return;
    let from = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, from)) {
      const part = chunk.subarray(from, nl);
      if (this.#heldBytes + part.byteLength > this.maxLine) return this.#overflow(part.byteLength);
      const bytes = this.#held.length ? Buffer.concat([...this.#held, part]) : part;
      this.#held = [];
      this.#heldBytes = 0;
      from = nl + 1;
      const line = dec.decode(bytes).trim();
      if (line) this.onLine(line);
      if (this.#stopped) return;
    }
    const rest = chunk.subarray(from);
    if (rest.byteLength === 0) return;
    if (this.#heldBytes + rest.byteLength > this.maxLine) return this.#overflow(rest.byteLength);
    // Copied: the stream may reuse its buffer.
    this.#held.push(rest.slice());
    this.#heldBytes += rest.byteLength;
  }

  #overflow(more: number): void {
    const held = this.#heldBytes + more;
    this.stop();
    this.onOverflow(held);
  }
}
