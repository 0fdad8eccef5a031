/**
 * Everything known about one client request as it moves through the proxy. Shared by the online
 * path (proxy/) and the offline one (offline/), which do not import each other.
 */
import type { OutgoingHttpHeaders } from "node:http";
import type { ServerRequest } from "../http/request.ts";
import type { ServerResponse } from "../http/response.ts";
import type { Readable } from "node:stream";
import type { Identity } from "../identity/identity.ts";
import type { Peer } from "../listener/https_listener.ts";
import type { RequestInfo } from "../request/request_info.ts";
import type { Representation } from "../request/representation.ts";
import type { CachePlan } from "../cache/response_tap.ts";

/** An upstream answer on its way to the client: what a transform may rewrite. */
export interface RelayedAnswer {
  status: number;
  reason?: string;
  headers: OutgoingHttpHeaders;
  body: Readable;
}

/** Rewrites an upstream answer for this request before the client sees it (headers and body). */
export type AnswerTransform = (answer: RelayedAnswer) => RelayedAnswer;

export interface RequestContext {
  req: ServerRequest;
  res: ServerResponse;
  peer: Peer;
  identity: Identity;
  info: RequestInfo;
  rep: Representation;
  /** Set when the answer may be cached (and so may be served from the cache). */
  plan?: CachePlan;
  startedAt: number;
  /** Where the answer came from, for logs and metrics. */
  source: "upstream" | "cache" | "local";
  /** A request body read up front (small bodies), so it can be retried or inspected offline. */
  body?: Uint8Array;
  /** Applied where the upstream body is relayed to the client (proxy/relay.ts), when set. */
  transform?: AnswerTransform;
  /** A held watch resumed upstream: the client's own request context (see watch_resume.ts). */
  resumes?: RequestContext;
}
