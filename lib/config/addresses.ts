/** What kind of address a listen address is. */
import { isIP } from "node:net";

/** An address to listen on: an IPv4 or IPv6 literal, or localhost. */
export function isListenAddress(a: string): boolean {
  return isIP(a) !== 0 || a === "localhost";
}

/** Loopback addresses: reachable from this node only. */
export function isLoopback(a: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a) || /^(::1|0*:(0*:)*0*1|::ffff:127\.[\d.]+)$/i.test(a) ||
    a === "localhost";
}
