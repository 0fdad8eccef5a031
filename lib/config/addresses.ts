/** What kind of address a listen address is. */

/** Loopback addresses: reachable from this node only. */
export function isLoopback(a: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a) || /^(::1|0*:(0*:)*0*1|::ffff:127\.[\d.]+)$/i.test(a) ||
    a === "localhost";
}
