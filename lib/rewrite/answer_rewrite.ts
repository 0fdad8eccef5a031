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
import { rewriteProtobufBody, rewriteProtobufWatchEvent } from "./kubernetes_endpoints_protobuf.ts";

export interface AnswerRewrite {
  /** A whole answer (JSON object, list, Table; enveloped protobuf); other content types pass unchanged. */
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

function isProtobuf(contentType: string | undefined): boolean {
  return !!contentType && /^application\/vnd\.kubernetes\.protobuf\b/i.test(contentType);
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
  const json = (b: Uint8Array) => rewriteBody(b, to, resource, ns);
  const protobuf = (b: Uint8Array) => rewriteProtobufBody(b, to);
  return {
    body: (b, contentType) => isJson(contentType) ? json(b) : isProtobuf(contentType) ? protobuf(b) : b,
    line,
    stream(status, h) {
      const contentType = String(h["content-type"] ?? "");
      const encoding = String(h["content-encoding"] ?? "identity").toLowerCase();
      if (status !== 200 || encoding !== "identity") return undefined;
      const watch = info.verb === "watch";
      if (isJson(contentType)) return watch ? lineStream(line) : wholeBodyStream(json);
      if (isProtobuf(contentType)) {
        return watch ? frameStream((e) => rewriteProtobufWatchEvent(e, to)) : wholeBodyStream(protobuf);
      }
      return undefined;
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

/** Rewrites a length-delimited stream (4-byte big-endian length + payload) frame by frame. */
export function frameStream(rewrite: (frame: Uint8Array) => Uint8Array): Transform {
  let buf = new Uint8Array(0);
  return new Transform({
    transform(chunk: Uint8Array, _enc, done) {
      const joined = new Uint8Array(buf.byteLength + chunk.byteLength);
      joined.set(buf);
      joined.set(chunk, buf.byteLength);
      let off = 0;
      const out: Uint8Array[] = [];
      while (joined.byteLength - off >= 4) {
        const len = new DataView(joined.buffer, joined.byteOffset + off, 4).getUint32(0);
        if (joined.byteLength - off - 4 < len) break;
        const frame = rewrite(joined.subarray(off + 4, off + 4 + len));
        const head = new Uint8Array(4);
        new DataView(head.buffer).setUint32(0, frame.byteLength);
        out.push(head, frame);
        off += 4 + len;
      }
      buf = joined.slice(off);
      done(null, out.length ? Buffer.concat(out) : undefined);
    },
    flush(done) {
      // A cut-off frame is passed on as it came: the client sees the same truncation.
      done(null, buf.byteLength ? buf : undefined);
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
