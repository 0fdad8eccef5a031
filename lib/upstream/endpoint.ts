/** An upstream endpoint URL taken apart once, not per request. */

export interface Endpoint {
  /** host[:port] as the Host header names it. */
  host: string;
  /** The host to connect to (IPv6 without brackets). */
  hostname: string;
  port: number;
  /** A path prefix from the URL, prepended to every request path ("" for none). */
  prefix: string;
  /** The TLS server name (SNI): the hostname unless it is an IP address. */
  servername?: string;
  /** The pool key: one set of connections per host and port. */
  key: string;
}

const parsed = new Map<string, Endpoint>();

export function endpointOf(url: string): Endpoint {
  let e = parsed.get(url);
  if (!e) {
    const u = new URL(url);
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    const port = Number(u.port || 443);
    e = {
      host: u.host,
      hostname,
      port,
      prefix: u.pathname.replace(/\/$/, ""),
      servername: /^[\d.]+$|:/.test(hostname) ? undefined : hostname,
      key: `${hostname}:${port}`,
    };
    parsed.set(url, e);
  }
  return e;
}
