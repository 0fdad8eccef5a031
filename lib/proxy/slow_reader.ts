/**
 * Bounds for a client that reads its answer slower than the cloud sends it (issue 18). Deno's TLS
 * sockets read on while paused, so backpressure alone bounds nothing: the bytes read from the
 * cloud but not yet written to the client are counted, and a client past its bound (in bytes, or
 * in time without taking anything) meets the kube-apiserver's policy for a watcher that cannot
 * keep up: its watch is ended after the last whole event (it re-watches from there), and any
 * other answer is cut, its connection closed (a truncated answer must never look whole).
 */
import { log } from "../log.ts";

export interface AnswerBounds {
  /** Bytes a watch's client may lag behind the cloud before the watch is ended. */
  watchBufferBytes: number;
  /** Bytes any other answer's client may lag behind the cloud before the answer is cut. */
  answerBufferBytes: number;
  /** How long a client may take nothing of its answer while bytes wait for it. */
  slowReaderTimeoutMs: number;
}

/** The flags' defaults (lib/config/serve_config.ts). */
export const DEFAULT_ANSWER_BOUNDS: AnswerBounds = {
  watchBufferBytes: 4 << 20,
  answerBufferBytes: 8 << 20,
  slowReaderTimeoutMs: 30_000,
};

/** What was past its bound: a watch or another answer, by its bytes or by time. */
export interface SlowReader {
  kind: "watch" | "answer";
  reason: "bytes" | "time";
}

/** Logged through the one rate-limited logger: a thousand stuck clients are one line and a summary. */
export function logSlowReader(
  what: SlowReader,
  fields: { path: string; identity: string; buffered: number },
): void {
  const msg = what.kind === "watch"
    ? "client cannot keep up with its watch: watch ended, the client re-watches from its last event"
    : "client cannot keep up with its answer: answer cut, connection closed";
  log.warn(msg, {
    reason: what.reason === "bytes" ? "buffer full" : "no progress",
    ...fields,
  }, `proxy.slow-reader:${what.kind}/${what.reason}`);
}
