/**
 * A small kube-apiserver REST client for the autonomy controller: JSON requests and watch streams
 * over the proxy's own upstream pool (lib/upstream/pool.ts), with the cluster CA and the client
 * pair: one HTTP client in the binary, whose failures carry codes (lib/errors.ts).
 */
import { createSecureContext } from "node:tls";
import { VERSION } from "../version.ts";
import { LiteError } from "../errors.ts";
import { type Endpoint, endpointOf } from "../upstream/endpoint.ts";
import { UpstreamPool } from "../upstream/pool.ts";
import type { UpstreamResponse } from "../upstream/response.ts";
import type { ClusterConfig } from "./cluster_config.ts";

/** A non-2xx answer, with the Status reason and message when the server sent one. */
export class KubeError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

/** One watch event. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: Record<string, unknown>;
}

export const REQUEST_TIMEOUT_MS = 30_000;
/** A JSON answer larger than this fails (E2BIG): a list of every pod of a large cluster fits. */
export const MAX_ANSWER_BYTES = 256 << 20;
/** One watch event larger than this ends the watch (E2BIG); etcd's own object limit is 1.5 MiB. */
export const MAX_EVENT_BYTES = 16 << 20;

export class KubeClient {
  readonly server: string;
  /** How long one JSON request may take before it fails with ETIMEDOUT. */
  readonly timeoutMs: number;
  #ep: Endpoint;
  #pool: UpstreamPool;
  #token?: () => Promise<string>;

  /** Throws on unusable TLS material (a PEM that does not parse), as the caller reports it. */
  constructor(cfg: ClusterConfig, timeoutMs = REQUEST_TIMEOUT_MS) {
    this.server = cfg.server;
    this.timeoutMs = timeoutMs;
    this.#token = cfg.token;
    const pair = cfg.certPem && cfg.keyPem ? { cert: cfg.certPem, key: cfg.keyPem } : {};
    createSecureContext({ ...(cfg.caPem ? { ca: cfg.caPem } : {}), ...pair });
    this.#ep = endpointOf(cfg.server);
    // Without a CA the platform's roots verify the server (node:tls takes an absent `ca` so).
    this.#pool = new UpstreamPool({ ca: cfg.caPem as string, ...pair, maxSockets: 16, maxIdle: 4 });
  }

  /** Sends a request; the answer's head, or a coded error. `signal` gives up on it (ECANCELED). */
  async #send(
    method: string,
    path: string,
    init: { body?: string; contentType?: string; signal: AbortSignal },
  ): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      host: this.#ep.host,
      "accept": "application/json",
      "user-agent": `lite-apiserver-autonomy/${VERSION}`,
    };
    if (init.contentType) headers["content-type"] = init.contentType;
    if (this.#token) headers["authorization"] = `Bearer ${await this.#token()}`;
    init.signal.throwIfAborted();
    const call = this.#pool.request(this.#ep, {
      method,
      path: this.#ep.prefix + path,
      headers,
      body: init.body === undefined ? undefined : new TextEncoder().encode(init.body),
    });
    const abort = () => call.abort();
    init.signal.addEventListener("abort", abort, { once: true });
    try {
      return await call.response;
    } catch (e) {
      if (init.signal.aborted) throw init.signal.reason;
      throw e;
    } finally {
      init.signal.removeEventListener("abort", abort);
    }
  }

  /** A JSON request; throws KubeError on a non-2xx answer, a LiteError (ETIMEDOUT, ...) on none. */
  async json(
    method: string,
    path: string,
    init: { body?: string; contentType?: string; timeoutMs?: number } = {},
  ): Promise<Record<string, unknown>> {
    const ms = init.timeoutMs ?? this.timeoutMs;
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new LiteError("ETIMEDOUT", `timeout: no answer within ${ms / 1000}s`)),
      ms,
    );
    try {
      const res = await this.#send(method, path, { ...init, signal: timeout.signal });
      const text = await readText(res, MAX_ANSWER_BYTES, timeout.signal);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text);
      } catch { /* not JSON: reported below by status */ }
      if (res.statusCode < 200 || res.statusCode > 299) {
        throw errorOf(res.statusCode, res.statusMessage, body, text);
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Streams watch events until the server ends the watch or `signal` aborts. */
  async *watch(path: string, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    const res = await this.#send("GET", path, { signal });
    if (res.statusCode < 200 || res.statusCode > 299) {
      const text = await readText(res, MAX_ANSWER_BYTES, signal);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text);
      } catch { /* reported by status */ }
      throw errorOf(res.statusCode, res.statusMessage, body, text);
    }
    const stop = () => res.destroy(signal.reason);
    signal.addEventListener("abort", stop, { once: true });
    try {
      const decoder = new TextDecoder();
      let buf = "";
      for await (const chunk of res) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) yield JSON.parse(line) as WatchEvent;
        }
        if (buf.length > MAX_EVENT_BYTES) {
          throw new LiteError("E2BIG", `a watch event over ${MAX_EVENT_BYTES} bytes`);
        }
      }
    } finally {
      signal.removeEventListener("abort", stop);
      if (!res.complete) res.destroy();
    }
  }

  close(): void {
    this.#pool.destroy();
  }
}

/** A whole answer body as text, within `max` bytes; `signal` gives up on it. */
async function readText(res: UpstreamResponse, max: number, signal: AbortSignal): Promise<string> {
  const stop = () => res.destroy(signal.reason);
  signal.addEventListener("abort", stop, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const c of res) {
      size += (c as Uint8Array).byteLength;
      if (size > max) throw new LiteError("E2BIG", `an answer over ${max} bytes`);
      chunks.push(c as Uint8Array);
    }
    return Buffer.concat(chunks, size).toString("utf8");
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw e;
  } finally {
    signal.removeEventListener("abort", stop);
    if (!res.complete) res.destroy();
  }
}

function errorOf(status: number, statusText: string, body: Record<string, unknown>, text: string): KubeError {
  const reason = typeof body.reason === "string" ? body.reason : statusText;
  const message = typeof body.message === "string"
    ? body.message
    : `${status} ${statusText}${text ? `: ${text.slice(0, 200).replace(/\s+/g, " ")}` : ""}`;
  return new KubeError(status, reason, message);
}

/** TLS verification failures by code (node:tls), in the words of the one start-up line. */
const NOT_SIGNED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
]);

/** Why a request never got an answer, in a few words, from its error's code. */
function reasonOfCode(code: string, message: string, timeoutMs: number): string | undefined {
  if (code === "ETIMEDOUT") return `timeout: no answer within ${timeoutMs / 1000}s`;
  if (code === "ECONNREFUSED") return "connection refused";
  if (NOT_SIGNED.has(code)) {
    return `TLS: certificate verify failed: the server's certificate is not signed by the ` +
      `kubeconfig's certificate-authority (certificate unknown: ${code})`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `TLS: certificate verify failed: the server's certificate is not valid for this host (${code})`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `TLS: certificate verify failed: the server's certificate is outside its validity (${code})`;
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "DNS: the server's host name does not resolve";
  if (code === "ECONNRESET" || code === "EPIPE") return "the connection was closed before an answer";
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return message.split("\n")[0].toLowerCase();
  return undefined;
}

/**
 * Why a request never got an answer, in a few words (`connection refused`, `TLS: ...`): from the
 * error's code (lib/upstream gives every error one), else from what its messages say.
 */
export function unreachableReason(e: unknown, timeoutMs: number): string {
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return `timeout: no answer within ${timeoutMs / 1000}s`;
  }
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 5; c = c.cause, depth++) {
    const code = (c as { code?: unknown }).code;
    const reason = typeof code === "string" ? reasonOfCode(code, c.message, timeoutMs) : undefined;
    if (reason) return reason;
  }
  const causes: string[] = [];
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 5; c = c.cause, depth++) {
    causes.push(c.message);
  }
  const all = causes.join(" | ");
  const cert = /invalid peer certificate: ([A-Za-z]+)(?:\((?:[A-Za-z]+\()*([A-Za-z]+))?/.exec(all);
  if (cert) {
    const kind = cert[1] === "Other" && cert[2] ? cert[2] : cert[1];
    if (kind === "UnknownIssuer" || kind === "BadSignature" || kind === "CaUsedAsEndEntity") {
      return `TLS: certificate verify failed: the server's certificate is not signed by the ` +
        `kubeconfig's certificate-authority (certificate unknown: ${kind})`;
    }
    if (kind === "NotValidForName" || kind === "NotValidForNameContext") {
      return `TLS: certificate verify failed: the server's certificate is not valid for this host (${kind})`;
    }
    if (kind === "Expired" || kind === "ExpiredContext" || kind === "NotValidYet") {
      return `TLS: certificate verify failed: the server's certificate is outside its validity (${kind})`;
    }
    return `TLS: certificate verify failed (${kind})`;
  }
  if (/connection refused/i.test(all)) return "connection refused";
  const tcp = /tcp connect error: ([^(|]+)/i.exec(all);
  if (tcp) return tcp[1].trim().toLowerCase();
  if (/dns error|failed to lookup address|name or service not known/i.test(all)) {
    return "DNS: the server's host name does not resolve";
  }
  if (/certificate required|bad certificate|certificate unknown|alert/i.test(all)) {
    return `TLS: the server refused the handshake (${causes.at(-1)!.split(": ").at(-1)})`;
  }
  if (/connection (reset|closed)|broken pipe|unexpected eof|incomplete message/i.test(all)) {
    return "the connection was closed before an answer";
  }
  // Unknown: the innermost message's own words, one line.
  return (causes.at(-1) ?? String(e)).split("\n")[0];
}
