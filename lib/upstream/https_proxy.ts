/**
 * HTTPS_PROXY / NO_PROXY support for the upstream: connections are tunnelled with HTTP CONNECT.
 */
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";

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
function tunnel(proxy: URL, options: ConnectOpts, cb: Callback): void {
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
  let buf = "";
  const onData = (chunk: Uint8Array) => {
    buf += new TextDecoder().decode(chunk);
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return;
    raw.off("data", onData);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(buf)?.[1];
    if (status !== "200") {
      raw.destroy();
      return finish(
        new Error(`HTTPS proxy ${proxy.host} refused CONNECT ${target}: ${buf.split("\r\n")[0]}`),
      );
    }
    const secure = tls.connect({
      ...options,
      socket: raw,
      servername: options.servername ?? (net.isIP(host) ? undefined : host),
    });
    secure.once("secureConnect", () => finish(null, secure));
    secure.once("error", (e) => finish(e));
  };
  raw.on("data", onData);
}

/**
 * An https.Agent for the upstream: direct, or through HTTPS_PROXY (HTTP CONNECT) unless NO_PROXY
 * exempts the host. Read once, when the agent is made.
 */
export function makeAgent(options: https.AgentOptions): https.Agent {
  const proxy = proxyUrl();
  if (!proxy) return new https.Agent(options);
  class ProxiedAgent extends https.Agent {
    // node:http accepts the socket through the callback when none is returned.
    override createConnection(opts: ConnectOpts, cb: Callback): Duplex {
      if (bypassProxy(String(opts.host ?? ""))) return tls.connect(opts);
      tunnel(proxy!, opts, cb);
      return undefined as unknown as Duplex;
    }
  }
  return new ProxiedAgent(options);
}
