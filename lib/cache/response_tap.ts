/**
 * Taps an upstream response on its way to the client and feeds it to the cache: whole bodies for
 * objects and lists, event by event for watches. The client's bytes are never delayed by it.
 */
import zlib from "node:zlib";
import type { Cache } from "./cache.ts";
import type { WatchEvent } from "./watch_event.ts";
import { log } from "../log.ts";
import { LineSplitter } from "./line_splitter.ts";
import { metaOf } from "./list_codec.ts";
import { InitialEventsCollector } from "./initial_events.ts";
import type { CachePlan, WatchProgress } from "./cache_plan.ts";

/** An upstream answer as the tap reads it (it emits "aborted" when its body is cut short). */
export interface TappedResponse extends NodeJS.ReadableStream {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
}

const MAX_BODY = 64 << 20;

function isJson(contentType: string | undefined): boolean {
  return !!contentType && /^application\/json\b/i.test(contentType);
}

export function tapResponse(cache: Cache, plan: CachePlan, ures: TappedResponse): void {
  if (ures.statusCode !== (plan.status ?? 200)) return;
  const contentType = String(ures.headers["content-type"] ?? "");
  if (!isJson(contentType)) return;
  let source: NodeJS.ReadableStream = ures;
  /** Stops feeding the cache (the client's stream goes on). */
  let stop = () => {};
  const encoding = String(ures.headers["content-encoding"] ?? "").toLowerCase();
  if (encoding === "gzip") {
    const gunzip = zlib.createGunzip();
    const feed = (c: Uint8Array) => gunzip.write(c);
    ures.on("data", feed);
    ures.on("end", () => gunzip.end());
    ures.on("aborted", () => gunzip.destroy());
    gunzip.on("error", (e) => log.debug("cannot decode gzip for the cache", { error: e.message }));
    source = gunzip;
    stop = () => {
      ures.off("data", feed);
      gunzip.destroy();
    };
  } else if (encoding && encoding !== "identity") {
    return;
  }
  if (plan.kind === "watch" || plan.kind === "follow") return tapWatch(cache, plan, source, () => stop());
  const objectKey = plan.keyFor ? plan.keyFor(contentType) : plan.key;
  if (!objectKey) return stop();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let complete = false;
  /** Bytes this tap holds in the shared budget. */
  let held = 0;
  let gaveUp = false;
  const release = () => {
    tapHeld -= held;
    held = 0;
  };
  const giveUp = (why: string) => {
    gaveUp = true;
    chunks.length = 0;
    release();
    stop();
    log.debug(`response not cached: ${why}`, { bytes: size });
  };
  source.on("data", (c: Uint8Array) => {
    if (gaveUp) return;
    size += c.byteLength;
    // Held until the answer ends: while its client reads slowly, a large list waits here in
    // full. Over the size limit, or over what all taps together may hold, it is not cached.
    if (size > MAX_BODY) return giveUp("too large to cache");
    if (tapHeld + c.byteLength > tapBudget) return giveUp("the answers being cached hold too much memory");
    chunks.push(c);
    held += c.byteLength;
    tapHeld += c.byteLength;
  });
  source.on("end", () => {
    complete = true;
    release();
    if (gaveUp) return;
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
    chunks.length = 0;
    if (plan.kind === "list") cache.recordListPage(plan.key, body, "application/json", plan.requestContinue);
    else if (!plan.wholeListOnly || !isPartialList(body)) cache.recordObject(objectKey, body, contentType);
  });
  // A response cut short must not be cached, and what it held is released at once.
  let uresEnded = false;
  ures.on("end", () => uresEnded = true);
  const cut = () => {
    if (complete) return;
    gaveUp = true;
    chunks.length = 0;
    release();
  };
  ures.on("aborted", cut);
  // Closed without its end (destroyed: the client left, the answer was cut). After a normal end a
  // gzip body may still be decoding: that one ends on its own.
  ures.on("close", () => {
    if (!uresEnded) cut();
  });
}

/**
 * The bytes all taps of whole bodies (objects, lists) may hold together: each holds its answer until
 * it ends, so many large lists read slowly (or never) would otherwise each hold up to MAX_BODY.
 * Over it, an answer is relayed but not cached.
 */
export const TAP_BUDGET_BYTES = 64 << 20;
let tapBudget = TAP_BUDGET_BYTES;
let tapHeld = 0;

/** Bytes held by all taps now (for tests and metrics). */
export function tapBytesHeld(): number {
  return tapHeld;
}

/** Tests: set the budget; returns the previous one. */
export function setTapBudget(bytes: number): number {
  const prev = tapBudget;
  tapBudget = bytes;
  return prev;
}

const enc = new TextEncoder();

/**
 * Where the JSON object starting at `start` ends (the index after its closing brace), reading only
 * structure (strings, nesting); -1 when `start` is not `{` or the object does not close. For a line
 * already known to be valid JSON, this finds a value's exact bytes.
 */
function objectEnd(s: string, start: number): number {
  if (s.charCodeAt(start) !== 0x7b) return -1;
  let depth = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) {
      for (i++; i < s.length && s.charCodeAt(i) !== 0x22; i++) if (s.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
  }
  return -1;
}

/**
 * The object's bytes exactly as the apiserver wrote them (`{"type":"…","object":{…}}`), so that an
 * event is stored with its numbers untouched. `line` must already be valid JSON. undefined when the
 * line has another shape (another field order, fields after the object).
 */
export function rawObject(line: string): Uint8Array | undefined {
  const m = /^\{"type":"[A-Za-z]+","object":/.exec(line);
  if (!m) return undefined;
  const end = objectEnd(line, m[0].length);
  if (end !== line.length - 1 || line.charCodeAt(end) !== 0x7d) return undefined;
  return enc.encode(line.slice(m[0].length, end));
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** The event types the apiserver sends; any other is not an event the cache can apply. */
const EVENT_TYPES = new Set(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]);

/**
 * One watch line as the cache needs it: type, object, item key, resourceVersion and the object's
 * bytes. Always fully parsed: the cache never stores bytes that are not one complete JSON object.
 * Throws when the line is not a watch event (invalid JSON, no object, an unknown type, an item
 * event without a name).
 */
export function parseWatchLine(line: string): WatchEvent {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch {
    // Not the parser's message: it quotes the line, which may hold secrets.
    throw new Error("not valid JSON");
  }
  if (!isObject(ev) || typeof ev.type !== "string" || !isObject(ev.object)) {
    throw new Error("not a watch event");
  }
  // Skipping an unknown type would leave the cached list silently missing a change.
  if (!EVENT_TYPES.has(ev.type)) throw new Error("watch event of an unknown type");
  const meta = isObject(ev.object.metadata) ? ev.object.metadata : {};
  if (ev.type !== "BOOKMARK" && ev.type !== "ERROR" && (typeof meta.name !== "string" || meta.name === "")) {
    throw new Error("watch event object without a name");
  }
  return {
    type: ev.type,
    object: ev.object,
    // Another field order (never the apiserver's) is serialised again.
    raw: rawObject(line) ?? enc.encode(JSON.stringify(ev.object)),
    itemKey: `${meta.namespace ?? ""}/${meta.name ?? ""}`,
    resourceVersion: String(meta.resourceVersion ?? ""),
  };
}

function isPartialList(body: Uint8Array): boolean {
  try {
    const doc = JSON.parse(new TextDecoder().decode(body));
    return !!doc?.metadata?.continue;
  } catch {
    return true;
  }
}

/**
 * Patches the cached list event by event, and follows the watch's progress (plan.progress). The
 * first event that cannot be cached whole (invalid, or over the size limit) ends the tapping: the
 * list stays as it was after the last whole event, older but never torn nor silently missing one
 * change; the client's stream goes on untouched, but can no longer be carried on after a cut.
 */
function tapWatch(cache: Cache, plan: CachePlan, source: NodeJS.ReadableStream, stop: () => void): void {
  const progress = plan.progress;
  let initial = plan.kind === "watch" && plan.initialEvents
    ? new InitialEventsCollector(MAX_BODY)
    : undefined;
  plan.initialEvents = false;
  const detach = () => {
    lines.stop();
    source.off("data", onData);
    stop();
    if (progress) progress.partial = true;
  };
  const lines = new LineSplitter(
    cache.limits.maxWatchEventBytes,
    (line) => {
      let ev: WatchEvent;
      try {
        ev = parseWatchLine(line);
        if (progress) follow(progress, ev, line);
      } catch (e) {
        detach();
        return log.warn("invalid watch event: this watch is relayed but no longer cached", {
          error: (e as Error).message,
        }, "cache.invalid-watch-event");
      }
      if (plan.kind !== "watch") return;
      if (initial) {
        // WatchList: the initial events are the list; nothing is written until they are whole.
        const step = initial.add(ev);
        if (step.state === "collecting") return;
        initial = undefined;
        if (step.state === "complete") return cache.recordListSnapshot(plan.key, step.snapshot);
        detach();
        return log.warn("watch-list initial events not cached: this watch is relayed but not cached", {
          reason: step.reason,
        });
      }
      cache.recordWatchEvent(plan.key, ev);
    },
    (bytes) => {
      detach();
      log.warn("watch event over the size limit: this watch is relayed but no longer cached", {
        bytes,
        limit: cache.limits.maxWatchEventBytes,
      }, "cache.watch-event-too-large");
    },
  );
  const onData = (c: Uint8Array) => {
    lines.push(c);
    if (progress && !lines.stopped) progress.partial = lines.holding;
  };
  source.on("data", onData);
}

/** Records how far the client's watch has got (ERROR events carry no version). */
function follow(progress: WatchProgress, ev: WatchEvent, line: string): void {
  if (ev.type === "ERROR") return;
  const rv = ev.resourceVersion ?? String(metaOf(ev.object).resourceVersion ?? "");
  if (rv) progress.lastRv = rv;
  if (progress.kind) return;
  // Once per watch: the fast path of parseWatchLine leaves the object unparsed.
  const object = (ev.object ?? JSON.parse(line).object) as { kind?: unknown; apiVersion?: unknown };
  if (typeof object?.kind === "string" && typeof object.apiVersion === "string") {
    progress.kind = object.kind;
    progress.apiVersion = object.apiVersion;
  }
}
