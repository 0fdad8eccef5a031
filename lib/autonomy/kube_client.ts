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

const REQUEST_TIMEOUT_MS = 30_000;

export class KubeClient {
  readonly server: string;
  #http: Deno.HttpClient;
  #token?: () => Promise<string>;

  constructor(cfg: ClusterConfig) {
    this.server = cfg.server;
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
      signal: AbortSignal.timeout(init.timeoutMs ?? REQUEST_TIMEOUT_MS),
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
