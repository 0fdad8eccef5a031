/**
 * A small kube-apiserver REST client for the autonomy controller: JSON requests and watch streams
 * over `fetch` with a `Deno.createHttpClient` carrying the cluster CA and the client pair. (This
 * controller runs in the cloud, off the proxy's request path: plain fetch is enough here.)
 */
import { VERSION } from "../version.ts";
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

export class KubeClient {
  readonly server: string;
  /** How long one JSON request may take before it fails with a TimeoutError. */
  readonly timeoutMs: number;
  #http: Deno.HttpClient;
  #token?: () => Promise<string>;

  constructor(cfg: ClusterConfig, timeoutMs = REQUEST_TIMEOUT_MS) {
    this.server = cfg.server;
    this.timeoutMs = timeoutMs;
    this.#token = cfg.token;
    this.#http = Deno.createHttpClient({
      ...(cfg.caPem ? { caCerts: [cfg.caPem] } : {}),
      ...(cfg.certPem && cfg.keyPem ? { cert: cfg.certPem, key: cfg.keyPem } : {}),
      http2: false,
    });
  }

  async #fetch(
    method: string,
    path: string,
    init: { body?: string; contentType?: string; signal?: AbortSignal },
  ) {
    const headers = new Headers({
      "accept": "application/json",
      "user-agent": `lite-apiserver-autonomy/${VERSION}`,
    });
    if (init.contentType) headers.set("content-type", init.contentType);
    if (this.#token) headers.set("authorization", `Bearer ${await this.#token()}`);
    return await fetch(`${this.server}${path}`, {
      method,
      headers,
      body: init.body,
      signal: init.signal,
      client: this.#http,
    });
  }

  /** A JSON request; throws KubeError on a non-2xx answer. */
  async json(
    method: string,
    path: string,
    init: { body?: string; contentType?: string; timeoutMs?: number } = {},
  ): Promise<Record<string, unknown>> {
    const res = await this.#fetch(method, path, {
      ...init,
      signal: AbortSignal.timeout(init.timeoutMs ?? this.timeoutMs),
    });
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text);
    } catch { /* not JSON: reported below by status */ }
    if (!res.ok) throw errorOf(res.status, res.statusText, body, text);
    return body;
  }

  /** Streams watch events until the server ends the watch or `signal` aborts. */
  async *watch(path: string, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    const res = await this.#fetch("GET", path, { signal });
    if (!res.ok) {
      const text = await res.text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text);
      } catch { /* reported by status */ }
      throw errorOf(res.status, res.statusText, body, text);
    }
    if (!res.body) return;
    let buf = "";
    for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) yield JSON.parse(line) as WatchEvent;
      }
    }
  }

  close(): void {
    this.#http.close();
  }
}

function errorOf(status: number, statusText: string, body: Record<string, unknown>, text: string): KubeError {
  const reason = typeof body.reason === "string" ? body.reason : statusText;
  const message = typeof body.message === "string"
    ? body.message
    : `${status} ${statusText}${text ? `: ${text.slice(0, 200).replace(/\s+/g, " ")}` : ""}`;
  return new KubeError(status, reason, message);
}

/**
 * Why a request never got an answer, in a few words (`connection refused`, `TLS: ...`), from a
 * failed fetch: Deno's TypeError says only "fetch failed"; the reason is in its cause's message
 * (`... client error (Connect): tcp connect error: Connection refused (os error 111)`).
 */
export function unreachableReason(e: unknown, timeoutMs: number): string {
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return `timeout: no answer within ${timeoutMs / 1000}s`;
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
