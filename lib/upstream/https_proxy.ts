/**
 * HTTPS_PROXY / NO_PROXY support for the upstream: connections are tunnelled with HTTP CONNECT.
 */
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { HttpError } from "../http/errors.ts";
import { NEED_MORE, ResponseHeadParser } from "../http/head_parser.ts";
import { LiteError } from "../errors.ts";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) ?? Deno.env.get(name.toLowerCase()) ?? undefined;
  } catch {
    return undefined;
  }
}

/** True when NO_PROXY exempts the host (exact, suffix with or without a leading dot, or `*`). */
export function bypassProxy(host: string, noProxy = env("NO_PROXY") ?? ""): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  for (let entry of noProxy.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (entry === "*") return true;
    entry = entry.replace(/:\d+$/, "");
    if (entry.startsWith(".")) entry = entry.slice(1);
    if (h === entry || h.endsWith(`.${entry}`)) return true;
  }
  return false;
}

export function proxyUrl(): URL | undefined {
  const v = env("HTTPS_PROXY");
  if (!v) return undefined;
  try {
    return new URL(v.includes("://") ? v : `http://${v}`);
  } catch {
    return undefined;
  }
}

type ConnectOpts = tls.ConnectionOptions & { host?: string; port?: number; servername?: string };
type Callback = (err: Error | null, socket?: Duplex) => void;

/** Opens a TLS connection to host:port through an HTTP CONNECT tunnel. */
function tunnel(proxy: URL, options: ConnectOpts, cb: Callback): Duplex {
  const host = String(options.host ?? "localhost");
  const port = Number(options.port ?? 443);
  const raw = net.connect(Number(proxy.port || (proxy.protocol === "https:" ? 443 : 80)), proxy.hostname);
  const auth = proxy.username
    ? `Proxy-Authorization: Basic ${
      btoa(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`)
    }\r\n`
    : "";
  const target = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  let done = false;
  const finish = (err: Error | null, socket?: Duplex) => {
    if (done) return;
    done = true;
    cb(err, socket);
  };
  raw.once("connect", () => raw.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`));
  raw.once("error", (e) => finish(e));
  // The proxy's answer to CONNECT, read with the same parser as any upstream answer.
  const parser = new ResponseHeadParser();
  parser.expect("CONNECT");
  const onData = (chunk: Uint8Array) => {
    const at = parser.feed(chunk);
    if (at === NEED_MORE) return;
    raw.off("data", onData);
    raw.pause();
    if (at instanceof HttpError || parser.head!.statusCode !== 200) {
      raw.destroy();
      const said = at instanceof HttpError
        ? at.message
        : `${parser.head!.statusCode} ${parser.head!.statusMessage}`;
      return finish(new Error(`HTTPS proxy ${proxy.host} refused CONNECT ${target}: ${said}`));
    }
    // Bytes after the proxy's answer already belong to the tunnel.
    if (at < chunk.byteLength) raw.unshift(chunk.subarray(at));
    const secure = tls.connect({
      ...options,
      socket: raw,
      servername: options.servername ?? (net.isIP(host) ? undefined : host),
    });
    const onError = (e: Error) => finish(e);
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      finish(null, secure);
    });
    secure.once("error", onError);
  };
  raw.on("data", onData);
  return raw;
}

/** What a pool needs to open a TLS connection to the upstream. */
export interface DialOptions {
  host: string;
  port: number;
  servername?: string;
  ca: string;
  cert?: string;
  key?: string;
  /** ALPN protocols to offer (default http/1.1 only); the socket's alpnProtocol says which won. */
  alpn?: string[];
}

/** A connection being opened: `cancel` gives up on it (a blackholed upstream never answers). */
export interface Dialing {
  ready: Promise<tls.TLSSocket>;
  cancel(): void;
}

export type Dial = (opts: DialOptions) => Dialing;

/**
 * Opens a TLS connection to the upstream, direct or through HTTPS_PROXY (HTTP CONNECT) unless
 * NO_PROXY exempts the host, and resolves once the handshake is done. HTTPS_PROXY and NO_PROXY are
 * read when the dialer is made.
 */
export function makeDial(): Dial {
  const proxy = proxyUrl();
  const noProxy = env("NO_PROXY") ?? "";
  return (opts) => {
    let cancel = () => {};
    const ready = new Promise<tls.TLSSocket>((resolve, reject) => {
      const options: tls.ConnectionOptions = {
        host: opts.host,
        port: opts.port,
        servername: opts.servername,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        ALPNProtocols: opts.alpn ?? ["http/1.1"],
      };
      const cancelled = () => new LiteError("ECANCELED", "connection attempt cancelled");
      if (proxy && !bypassProxy(opts.host, noProxy)) {
        const raw = tunnel(
          proxy,
          options,
          (err, socket) => err ? reject(err) : resolve(socket as tls.TLSSocket),
        );
        cancel = () => {
          raw.destroy();
          reject(cancelled());
        };
        return;
      }
      const socket = tls.connect(options);
      const onError = (err: Error) => reject(err);
      socket.once("error", onError);
      socket.once("secureConnect", () => {
        socket.off("error", onError);
        resolve(socket);
      });
      cancel = () => {
        socket.destroy();
        reject(cancelled());
      };
    });
    return { ready, cancel: () => cancel() };
  };
}
