/**
 * Stops and restarts reading a socket from the network. `pause()` alone bounds nothing on Deno's
 * `node:tls` sockets: the TLS layer keeps reading the TCP connection and buffering what it
 * decrypts (DESIGN.md). Deno 2.9's TLSSocket keeps its native TCP handle at
 * `_handle._nativeTcpHandle`; `readStop()` on it does stop reading, so the kernel's buffers fill
 * and the peer's writes block (measured: a flooding client could write 3 MiB, not 256 MiB).
 * Sockets without that handle (plain streams, test pairs) fall back to `pause()`.
 */
import type { Duplex } from "node:stream";

interface NativeTcpHandle {
  readStop(): number;
  readStart(): number;
}

export interface ReadGate {
  /** Stop reading (and delivering 'data'). Idempotent. */
  stop(): void;
  /** Read again. Idempotent. */
  start(): void;
  /** Reading is stopped by this gate. */
  readonly stopped: boolean;
  /** The network reads really stop (not only the delivery of 'data'). */
  readonly native: boolean;
}

function nativeHandle(socket: Duplex): NativeTcpHandle | undefined {
  // deno-lint-ignore no-explicit-any
  const h = (socket as any)?._handle?._nativeTcpHandle;
  return h && typeof h.readStop === "function" && typeof h.readStart === "function" ? h : undefined;
}

export function readGate(socket: Duplex): ReadGate {
  const tcp = nativeHandle(socket);
  let stopped = false;
  return {
    get stopped() {
      return stopped;
    },
    native: tcp !== undefined,
    stop() {
      if (stopped) return;
      stopped = true;
      socket.pause();
      if (tcp && !socket.destroyed) tcp.readStop();
    },
    start() {
      if (!stopped) return;
      stopped = false;
      if (tcp && !socket.destroyed) tcp.readStart();
      socket.resume();
    },
  };
}
