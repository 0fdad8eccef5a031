/**
 * A per-request answer rewrite: decided once per request (who asks, about what), then applied to
 * whatever answers it: an upstream body or watch stream (online), a cached body or a held watch's
 * events (offline). The cache always keeps the upstream's truth.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Transform } from "node:stream";
import type { Identity } from "../identity/identity.ts";
import type { RequestInfo } from "../request/request_info.ts";
import {
  type EndpointsResource,
  rewriteBody,
  rewriteWatchLine,
  type ServiceEndpoint,
} from "./kubernetes_endpoints.ts";

export interface AnswerRewrite {
  /** A whole JSON answer (object, list, Table); other content types pass unchanged. */
  body(body: Uint8Array, contentType: string): Uint8Array;
  /** One watch event line, without its newline. */
  line(line: string): string;
  /**
   * A Transform to put between the upstream answer and the client, or undefined when this answer
   * is relayed as it is (not a 200, not JSON, or content-encoded).
   */
  stream(status: number, headers: IncomingHttpHeaders): Transform | undefined;
}

/** In-cluster clients: kube-proxy's view of the `kubernetes` Service. */
export interface KubernetesServiceRewrite {
  endpoint: ServiceEndpoint;
  /** User names (certificate CNs) of the node's kube-proxy. */
  proxyIdentities: ReadonlySet<string>;
}

/** The user name an identity authenticates as upstream, when the proxy can know it exactly. */
function userName(identity: Identity): string | undefined {
  return identity.kind === "cert" ? identity.cn : undefined;
}

function endpointsResource(info: RequestInfo): EndpointsResource | undefined {
  if (!info.isResourceRequest || info.subresource) return undefined;
  if (info.namespace !== "" && info.namespace !== "default") return undefined;
  if (info.group === "" && info.version === "v1" && info.resource === "endpoints") return "endpoints";
  if (info.group === "discovery.k8s.io" && info.resource === "endpointslices") return "endpointslices";
  return undefined;
}

function isJson(contentType: string | undefined): boolean {
  return !!contentType && /^application\/json\b/i.test(contentType);
}

/**
 * The rewrite for this request, or undefined: only reads of Endpoints/EndpointSlices that can hold
 * the `kubernetes` Service's, by one of kube-proxy's identities, not impersonating anyone.
 */
export function answerRewriteFor(
  settings: KubernetesServiceRewrite | undefined,
  identity: Identity,
  info: RequestInfo,
  headers: IncomingHttpHeaders,
): AnswerRewrite | undefined {
  if (!settings) return undefined;
  const name = userName(identity);
  if (name === undefined || !settings.proxyIdentities.has(name)) return undefined;
  if (info.verb !== "get" && info.verb !== "list" && info.verb !== "watch") return undefined;
  const resource = endpointsResource(info);
  if (!resource) return undefined;
  if (Object.keys(headers).some((k) => k.startsWith("impersonate-"))) return undefined;
  const to = settings.endpoint;
  const ns = info.namespace;
  const line = (l: string) => rewriteWatchLine(l, to, resource, ns);
  return {
    body: (b, contentType) => isJson(contentType) ? rewriteBody(b, to, resource, ns) : b,
    line,
    stream(status, h) {
      if (status !== 200 || !isJson(String(h["content-type"] ?? ""))) return undefined;
      const encoding = String(h["content-encoding"] ?? "identity").toLowerCase();
      if (encoding !== "identity") return undefined;
      return info.verb === "watch"
        ? lineStream(line)
        : wholeBodyStream((b) => rewriteBody(b, to, resource, ns));
    },
  };
}

const enc = new TextEncoder();

/** Rewrites a newline-delimited stream line by line, each line passed on as soon as it is whole. */
export function lineStream(rewrite: (line: string) => string): Transform {
  const dec = new TextDecoder();
  let buf = "";
  return new Transform({
    transform(chunk: Uint8Array, _enc, done) {
      buf += dec.decode(chunk, { stream: true });
      let out = "";
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        out += rewrite(buf.slice(0, nl)) + "\n";
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
      }
      done(null, out ? enc.encode(out) : undefined);
    },
    flush(done) {
      buf += dec.decode();
      done(null, buf ? enc.encode(rewrite(buf)) : undefined);
    },
  });
}

/** Collects a whole body, then passes on its rewritten form. */
export function wholeBodyStream(rewrite: (body: Uint8Array) => Uint8Array): Transform {
  const chunks: Uint8Array[] = [];
  let size = 0;
  return new Transform({
    transform(chunk: Uint8Array, _enc, done) {
      chunks.push(chunk);
      size += chunk.byteLength;
      done();
    },
    flush(done) {
      const body = new Uint8Array(size);
      let off = 0;
      for (const c of chunks) {
        body.set(c, off);
        off += c.byteLength;
      }
      done(null, rewrite(body));
    },
  });
}
