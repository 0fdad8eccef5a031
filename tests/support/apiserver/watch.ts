/**
 * Watch streams: newline-delimited JSON WatchEvents over a chunked response, with
 * resourceVersion replay, 410 Gone as an ERROR event, bookmarks, sendInitialEvents and timeouts.
 */
import type { ServerResponse } from "node:http";
import { queryBool } from "./request.ts";
import { groupVersion, type ResourceDef } from "./resources.ts";
import type { Matcher } from "./selectors.ts";
import { ApiError, invalid } from "./status.ts";
import { meta, type Obj, type ObjectStore, type StoreEvent } from "./store.ts";
import { contentTypeFor, represent, type Representation } from "./table.ts";

/** What a watch is about. */
export interface WatchSpec {
  def: ResourceDef;
  namespace: string;
  name: string;
  matches: Matcher;
  rep: Representation;
  params: URLSearchParams;
  bookmarkIntervalMs: number;
}

/** Checks watch parameters that the real server rejects with 422. */
export function validateWatch(params: URLSearchParams): void {
  if (queryBool(params, "sendInitialEvents")) {
    if (params.get("resourceVersionMatch") !== "NotOlderThan") {
      throw invalid(
        "",
        "",
        "resourceVersionMatch",
        "Forbidden",
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
      );
    }
    if (!queryBool(params, "allowWatchBookmarks")) {
      throw invalid(
        "",
        "",
        "allowWatchBookmarks",
        "Forbidden",
        "sendInitialEvents requires setting allowWatchBookmarks to true",
      );
    }
  } else if (params.get("resourceVersionMatch")) {
    throw invalid(
      "",
      "",
      "resourceVersionMatch",
      "Forbidden",
      "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
    );
  }
}

/** Streams a watch until the client goes, the timeout passes, or `cancel` is called; returns cancel. */
export function serveWatch(
  store: ObjectStore,
  spec: WatchSpec,
  res: ServerResponse,
  onEnd: () => void,
): () => void {
  const { def, rep, params } = spec;
  const inScope = (o: Obj) => {
    const m = meta(o);
    if (def.namespaced && spec.namespace && m.namespace !== spec.namespace) return false;
    if (spec.name && m.name !== spec.name) return false;
    return spec.matches(o);
  };
  res.writeHead(200, {
    "Content-Type": contentTypeFor(rep),
    "Cache-Control": "no-cache, private",
    "Audit-Id": crypto.randomUUID(),
  });
  res.flushHeaders();

  let done = false;
  const send = (type: string, obj: Obj) => {
    if (!done) res.write(JSON.stringify({ type, object: obj }) + "\n");
  };
  const sendObj = (type: string, obj: Obj) => send(type, represent(def, obj, rep));
  const bookmark = (annotations?: Record<string, string>) => {
    const md: Obj = { resourceVersion: String(store.rv) };
    if (annotations) md.annotations = annotations;
    const obj = rep.as === "object"
      ? { kind: def.kind, apiVersion: groupVersion(def), metadata: md }
      : { kind: "PartialObjectMetadata", apiVersion: `meta.k8s.io/${rep.metaVersion}`, metadata: md };
    send("BOOKMARK", obj);
  };
  const deliver = (e: StoreEvent) => {
    if (e.def !== def) return;
    const now = inScope(e.obj);
    const before = e.type === "MODIFIED" && e.old ? inScope(e.old) : now;
    if (e.type === "MODIFIED") {
      if (now && before) sendObj("MODIFIED", e.obj);
      else if (now) sendObj("ADDED", e.obj);
      else if (before) sendObj("DELETED", e.obj);
    } else if (now) sendObj(e.type, e.obj);
  };

  const timers: ReturnType<typeof setTimeout>[] = [];
  let unsubscribe = () => {};
  const cancel = () => {
    if (done) return;
    done = true;
    unsubscribe();
    for (const t of timers) clearTimeout(t), clearInterval(t);
    res.end();
    onEnd();
  };
  res.on("close", cancel);

  const rv = params.get("resourceVersion") ?? "";
  const initial = queryBool(params, "sendInitialEvents");
  if (initial || rv === "" || rv === "0") {
    for (const o of store.list(def, spec.namespace || undefined)) if (inScope(o)) sendObj("ADDED", o);
    if (initial) bookmark({ "k8s.io/initial-events-end": "true" });
  } else {
    try {
      for (const e of store.since(def, Number(rv))) deliver(e);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      send("ERROR", e.body());
      cancel();
      return cancel;
    }
  }
  unsubscribe = store.subscribe(deliver);

  if (queryBool(params, "allowWatchBookmarks")) {
    timers.push(setInterval(() => bookmark(), spec.bookmarkIntervalMs));
  }
  const timeout = Number(params.get("timeoutSeconds") ?? "");
  if (timeout > 0) timers.push(setTimeout(cancel, timeout * 1000));
  return cancel;
}
