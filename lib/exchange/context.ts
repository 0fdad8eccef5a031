/**
 * Everything known about one client request as it moves through the proxy. Shared by the online
 * path (proxy/) and the offline one (offline/), which do not import each other: lib/router.ts, above
 * both, joins them (tests/import_graph.test.ts checks it).
 */
import type { ServerRequest } from "../http/request.ts";
import type { ServerResponse } from "../http/response.ts";
import type { Identity } from "../identity/identity.ts";
import type { Peer } from "../listener/https_listener.ts";
import type { RequestInfo } from "../request/request_info.ts";
import type { Representation } from "../request/representation.ts";
import type { CachePlan } from "../cache/cache_plan.ts";
import type { AnswerRewrite } from "../rewrite/answer_rewrite.ts";

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
  /**
   * Applied to the answer whichever path sends it (in-cluster clients: kube-proxy's view); online,
   * in proxy/relay.ts, the one place the upstream body is relayed.
   */
  rewrite?: AnswerRewrite;
  /** A held watch resumed upstream: the client's own request context (see watch_resume.ts). */
  resumes?: RequestContext;
}
