/**
 * ServiceAccount TokenRequests (`POST .../serviceaccounts/<name>/token`): a token the cloud issued
 * to this same identity for this same request body is a real token until it expires, so it may be
 * handed out again offline. Never a locally minted one.
 */
import type { RequestInfo } from "../request/request_info.ts";

/** A token is handed out offline only while it has at least this long left. */
export const MIN_TOKEN_LIFETIME_MS = 60_000;

export function isTokenRequest(info: RequestInfo): boolean {
  return info.isResourceRequest && info.verb === "create" && info.group === "" &&
    info.resource === "serviceaccounts" &&
    info.subresource === "token" && info.name !== "";
}

/** The cached answer, if its token is still valid for a while. */
export function stillValid(body: Uint8Array, now = Date.now()): boolean {
  try {
    const doc = JSON.parse(new TextDecoder().decode(body));
    const exp = Date.parse(doc?.status?.expirationTimestamp ?? "");
    return typeof doc?.status?.token === "string" && exp - now > MIN_TOKEN_LIFETIME_MS;
  } catch {
    return false;
  }
}
