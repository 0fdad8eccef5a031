/**
 * Taps an upstream response on its way to the client and feeds it to the cache: whole bodies for
 * objects and lists, event by event for watches. The client's bytes are never delayed by it.
 */
import zlib from "node:zlib";
import type { IncomingMessage } from "node:http";
import type { CacheKey } from "../store/store.ts";
import type { Cache, WatchEvent } from "./cache.ts";
import { log } from "../log.ts";

/** What to do with a cacheable response. */
export interface CachePlan {
  /** object: put as is; list: itemise (JSON lists); watch: patch the list under `key`. */
  kind: "object" | "list" | "watch";
  key: CacheKey;
  /** The continue token the client sent, for paged lists. */
  requestContinue: string;
  /** A list stored as one object: cached only if the answer is not a first page of several. */
  wholeListOnly?: boolean;
  /** The status that is cached (200, or 201 for a TokenRequest). */
  status?: number;
}

const MAX_BODY = 64 << 20;

function isJson(contentType: string | undefined): boolean {
  return !!contentType && /^application\/json\b/i.test(contentType);
}

export function tapResponse(cache: Cache, plan: CachePlan, ures: IncomingMessage): void {
  if (ures.statusCode !== (plan.status ?? 200)) return;
  const contentType = String(ures.headers["content-type"] ?? "");
  if (!isJson(contentType)) return;
  let source: NodeJS.ReadableStream = ures;
  const encoding = String(ures.headers["content-encoding"] ?? "").toLowerCase();
  if (encoding === "gzip") {
    const gunzip = zlib.createGunzip();
    ures.on("data", (c: Uint8Array) => gunzip.write(c));
    ures.on("end", () => gunzip.end());
    ures.on("aborted", () => gunzip.destroy());
    gunzip.on("error", (e) => log.debug("cannot decode gzip for the cache", { error: e.message }));
    source = gunzip;
  } else if (encoding && encoding !== "identity") {
    return;
  }
  if (plan.kind === "watch") return tapWatch(cache, plan.key, source);
  const chunks: Uint8Array[] = [];
  let size = 0;
  let complete = false;
  source.on("data", (c: Uint8Array) => {
    size += c.byteLength;
    if (size <= MAX_BODY) chunks.push(c);
  });
  source.on("end", () => {
    complete = true;
    if (size > MAX_BODY) return log.debug("response too large to cache", { bytes: size });
    const body = concat(chunks, size);
    if (plan.kind === "list") cache.recordListPage(plan.key, body, "application/json", plan.requestContinue);
    else if (!plan.wholeListOnly || !isPartialList(body)) cache.recordObject(plan.key, body, contentType);
  });
  // A response cut short must not be cached.
  ures.on("aborted", () => {
    if (!complete) chunks.length = 0;
  });
}

const enc = new TextEncoder();

/**
 * The object's bytes as the apiserver wrote them (`{"type":"…","object":{…}}`), so that an event
 * is stored without serialising it again. undefined when the line has another shape.
 */
export function rawObject(line: string): Uint8Array | undefined {
  const m = /^\{"type":"[A-Z]+","object":/.exec(line);
  if (!m || !line.endsWith("}}")) return undefined;
  return enc.encode(line.slice(m[0].length, -1));
}

/**
 * The start of a watch event as the apiserver writes it (Go struct order: kind, apiVersion, then
 * ObjectMeta's name, generateName, namespace, selfLink, uid, resourceVersion). Names and
 * namespaces never need escaping; anything else falls back to a full parse.
 */
const EVENT_HEAD = new RegExp(
  '^\\{"type":"([A-Z]+)","object":\\{"kind":"[^"\\\\]*","apiVersion":"[^"\\\\]*","metadata":\\{' +
    '"name":"([^"\\\\]*)"(?:,"generateName":"[^"\\\\]*")?(?:,"namespace":"([^"\\\\]*)")?' +
    '(?:,"selfLink":"[^"\\\\]*")?(?:,"uid":"[^"\\\\]*")?,"resourceVersion":"([^"\\\\]*)"',
);

/**
 * One watch line as the cache needs it: type, item key, resourceVersion and the object's raw
 * bytes. The common shape is read without parsing the whole object; others are parsed.
 */
export function parseWatchLine(line: string): WatchEvent {
  const m = EVENT_HEAD.exec(line);
  if (m && line.endsWith("}}")) {
    return {
      type: m[1],
      object: undefined,
      raw: enc.encode(line.slice(line.indexOf('"object":') + 9, -1)),
      itemKey: `${m[3] ?? ""}/${m[2]}`,
      resourceVersion: m[4],
    };
  }
  const ev = JSON.parse(line) as WatchEvent;
  ev.raw = rawObject(line);
  return ev;
}

function isPartialList(body: Uint8Array): boolean {
  try {
    const doc = JSON.parse(new TextDecoder().decode(body));
    return !!doc?.metadata?.continue;
  } catch {
    return true;
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function tapWatch(cache: Cache, key: CacheKey, source: NodeJS.ReadableStream): void {
  const dec = new TextDecoder();
  let buf = "";
  source.on("data", (c: Uint8Array) => {
    buf += dec.decode(c, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) {
        try {
          cache.recordWatchEvent(key, parseWatchLine(line));
        } catch {
          log.debug("unparsable watch event not cached");
        }
      }
      nl = buf.indexOf("\n");
    }
  });
}
