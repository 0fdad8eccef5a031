/**
 * HTTP handling for the fake kube-apiserver: authentication, authorization, discovery, CRUD,
 * lists with selectors and paging, subresources and watches.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { parse as parseYaml } from "yaml";
import {
  authenticate,
  authorize,
  type ConnCert,
  type Identity,
  impersonate,
  type Impersonation,
  readImpersonation,
  type Tokens,
} from "./auth.ts";
import {
  aggregatedContentType,
  aggregatedDiscovery,
  aggregatedVersion,
  discovery,
  openapiV2,
  openapiV3,
  VERSION_INFO,
} from "./discovery.ts";
import { applyPatch } from "./patch.ts";
import { addDefaultTolerations, validatePodUpdate } from "./pod_rules.ts";
import { rbacAllows } from "./rbac.ts";
import { decodeProtobuf } from "./protobuf.ts";
import { parseResourcePath, type ResourceRequest } from "./request.ts";
import { findResource, groupVersion, type ResourceDef, RESOURCES } from "./resources.ts";
import { type Matcher, parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import {
  ApiError,
  type AuthzAttributes,
  badRequest,
  continueExpired,
  forbidden,
  invalid,
  methodNotAllowed,
  notAcceptable,
  notFound,
  pathNotFound,
  unauthorized,
  unsupportedMediaType,
} from "./status.ts";
import { meta, type Obj, type ObjectStore, timestamp } from "./store.ts";
import { contentTypeFor, negotiate, represent, type Representation, representList } from "./table.ts";
import { serveWatch, validateWatch } from "./watch.ts";

/** One request as the server saw it. */
export interface RequestRecord {
  time: number;
  method: string;
  path: string;
  query: string;
  user: string;
  groups: string[];
  authn: "cert" | "token" | "anonymous" | "invalid";
  certSerial?: string;
  userAgent: string;
  accept: string;
  contentType: string;
  status: number;
  /** What the request asked to impersonate, read as the apiserver reads it (user/groups: who it acted as). */
  impersonation?: Impersonation;
  /** Header fields as received, names as sent and values alternating (repeated fields apart). */
  rawHeaders: string[];
}

/** The log entry of one request (status 0 until the response head is sent). */
export function requestRecord(req: IncomingMessage, url: URL, id: Identity, status: number): RequestRecord {
  const impersonation = readImpersonation(req.rawHeaders);
  return {
    impersonation,
    rawHeaders: [...req.rawHeaders],
    time: Date.now(),
    method: req.method ?? "GET",
    path: url.pathname,
    query: url.search.replace(/^\?/, ""),
    user: id.user,
    groups: id.groups,
    authn: id.authn,
    certSerial: id.certSerial,
    userAgent: String(req.headers["user-agent"] ?? ""),
    accept: String(req.headers.accept ?? ""),
    contentType: String(req.headers["content-type"] ?? ""),
    status,
  };
}

/** What the handler needs from its surroundings. */
export interface HandlerContext {
  store: ObjectStore;
  tokens: Tokens;
  bookmarkIntervalMs: number;
  serverAddress: () => string;
  connCert: (req: IncomingMessage) => ConnCert;
  record: (r: RequestRecord) => void;
  updated: (r: RequestRecord) => void;
  watches: Set<() => void>;
  /** Milliseconds to wait before handling a request (a slow but healthy apiserver); 0 = none. */
  delayFor?: (method: string, path: string) => number;
}

const NAMESPACES = findResource("", "v1", "namespaces")!;
const PODS = findResource("", "v1", "pods")!;

function readBody(req: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => {
      const n = chunks.reduce((a, c) => a + c.length, 0);
      const out = new Uint8Array(n);
      let o = 0;
      for (const c of chunks) out.set(c, o), o += c.length;
      resolve(out);
    });
    req.on("error", reject);
  });
}

function send(
  res: ServerResponse,
  rec: RequestRecord,
  ctx: HandlerContext,
  status: number,
  body: unknown,
  type = "application/json",
): void {
  rec.status = status;
  ctx.updated(rec);
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": type,
    "Cache-Control": "no-cache, private",
    "Audit-Id": crypto.randomUUID(),
    "Content-Length": String(new TextEncoder().encode(text).length),
  });
  res.end(text);
}

function decodeBody(body: Uint8Array, contentType: string): Obj {
  const type = contentType.split(";")[0].trim();
  try {
    if (type === "application/vnd.kubernetes.protobuf") return decodeProtobuf(body);
    const text = new TextDecoder().decode(body);
    if (type === "application/json" || type === "") return JSON.parse(text);
    if (type === "application/yaml") return parseYaml(text);
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw badRequest(`Object 'Kind' is missing in '${new TextDecoder().decode(body).slice(0, 80)}'`);
  }
  throw unsupportedMediaType(contentType);
}

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(t: ContinueToken): string {
  return btoa(JSON.stringify({ v: "meta.k8s.io/v1", rv: t.rv, start: t.start })).replace(/=+$/, "");
}

function decodeContinue(s: string): ContinueToken {
  try {
    const padded = s + "=".repeat((4 - (s.length % 4)) % 4);
    const t = JSON.parse(atob(padded));
    if (typeof t.rv !== "number" || typeof t.start !== "string") throw new Error();
    return t;
  } catch {
    throw badRequest(
      "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
    );
  }
}

function objKey(o: Obj): string {
  const m = meta(o);
  return `${m.namespace ?? ""}/${m.name}`;
}

/** A delayed request whose client went away (closed its connection or reset its stream). */
const CLIENT_GONE = new Error("client went away");

/** The fake apiserver's request handler. */
export function createHandler(ctx: HandlerContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const url = new URL(req.url ?? "/", "https://fake");
    const conn = ctx.connCert(req);
    const authn = authenticate(conn, req.headers, ctx.tokens);
    const acting = impersonate(authn, readImpersonation(req.rawHeaders));
    const id = acting === "forbidden" ? authn : acting;
    const rec = requestRecord(req, url, id, 0);
    ctx.record(rec);
    const delay = ctx.delayFor?.(rec.method, rec.path) ?? 0;
    const handled = delay > 0
      ? new Promise<void>((resolve, reject) => {
        // Cancelled like a watch when the server closes, so no timer outlives it.
        const cancel = () => {
          clearTimeout(timer);
          ctx.watches.delete(cancel);
          res.destroy();
        };
        const timer = setTimeout(() => {
          ctx.watches.delete(cancel);
          resolve();
        }, delay);
        ctx.watches.add(cancel);
        res.once("close", () => {
          if (ctx.watches.has(cancel)) {
            cancel();
            reject(CLIENT_GONE);
          }
        });
      }).then(() => handle(ctx, req, res, url, id, rec, acting === "forbidden"))
      : handle(ctx, req, res, url, id, rec, acting === "forbidden");
    handled.catch((e) => {
      // Nobody to answer: the request stays recorded as unanswered (status 0), as over HTTP/1.1.
      if (e === CLIENT_GONE) return;
      const err = e instanceof ApiError
        ? e
        : new ApiError(500, "InternalError", `Internal error occurred: ${e}`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      send(res, rec, ctx, err.code, err.body());
    });
  };
}

async function handle(
  ctx: HandlerContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  id: Identity,
  rec: RequestRecord,
  impersonationRefused = false,
): Promise<void> {
  if (id.authn === "invalid") throw unauthorized();
  if (impersonationRefused) {
    const user = rec.impersonation?.user;
    throw new ApiError(
      403,
      "Forbidden",
      user === undefined
        ? "requested impersonation without impersonating a user"
        : `users "${user}" is forbidden: User "${id.user}" cannot impersonate resource "users" in API group "" at the cluster scope`,
    );
  }
  const method = req.method ?? "GET";
  const path = url.pathname;
  const params = url.searchParams;
  const info = parseResourcePath(method, path, params);
  if (info === undefined || info === "unknown") {
    const attrs: AuthzAttributes = {
      user: id.user,
      verb: method.toLowerCase(),
      resourceRequest: false,
      path,
      group: "",
      resource: "",
      subresource: "",
      namespace: "",
      name: "",
    };
    if (!authorize(id, attrs, (i, a) => rbacAllows(ctx.store, i, a))) throw forbidden(attrs);
    if (info === "unknown") throw pathNotFound();
    return nonResource(ctx, method, path, String(req.headers.accept ?? ""), res, rec);
  }
  const attrs: AuthzAttributes = {
    user: id.user,
    verb: info.verb,
    resourceRequest: true,
    path,
    group: info.def.group,
    resource: info.def.resource,
    subresource: info.subresource,
    namespace: info.namespace,
    name: info.name,
  };
  if (!authorize(id, attrs, (i, a) => rbacAllows(ctx.store, i, a))) throw forbidden(attrs);
  if (info.subresource && !info.def.subresources[info.subresource]) throw pathNotFound();
  if (info.def.namespaced && !info.namespace && info.name) throw pathNotFound();
  const rep = negotiate(String(req.headers.accept ?? ""), params.get("includeObject"));
  if (!rep) throw notAcceptable();
  return await resource(ctx, req, res, info, params, rep, rec);
}

function nonResource(
  ctx: HandlerContext,
  method: string,
  path: string,
  accept: string,
  res: ServerResponse,
  rec: RequestRecord,
) {
  if (method !== "GET" && method !== "HEAD") throw methodNotAllowed();
  const p = path.replace(/\/+$/, "");
  if (["/healthz", "/livez", "/readyz"].some((h) => p === h || p.startsWith(h + "/"))) {
    return send(res, rec, ctx, 200, "ok", "text/plain; charset=utf-8");
  }
  if (p === "/version") return send(res, rec, ctx, 200, VERSION_INFO);
  if (p === "/openapi/v2") return send(res, rec, ctx, 200, openapiV2());
  if (p === "/openapi/v3") return send(res, rec, ctx, 200, openapiV3());
  const v = aggregatedVersion(accept);
  const aggregated = v && aggregatedDiscovery(path, v);
  if (v && aggregated) return send(res, rec, ctx, 200, aggregated, aggregatedContentType(v));
  const doc = discovery(path, ctx.serverAddress());
  if (doc) return send(res, rec, ctx, 200, doc);
  throw pathNotFound();
}

function selectors(info: ResourceRequest, params: URLSearchParams): Matcher {
  const labels = parseLabelSelector(params.get("labelSelector") ?? "");
  const fields = parseFieldSelector(
    params.get("fieldSelector") ?? "",
    info.def.resource,
    info.def.group.includes("."),
  );
  return (o) => labels(o) && fields(o);
}

async function resource(
  ctx: HandlerContext,
  req: IncomingMessage,
  res: ServerResponse,
  info: ResourceRequest,
  params: URLSearchParams,
  rep: Representation,
  rec: RequestRecord,
): Promise<void> {
  const { def, store } = { def: info.def, store: ctx.store };
  const ns = def.namespaced ? info.namespace : undefined;
  const ok = (status: number, obj: Obj) => {
    rec.status = status;
    send(res, rec, ctx, status, represent(def, obj, rep), contentTypeFor(rep));
  };
  const plain = (status: number, obj: Obj) => send(res, rec, ctx, status, obj);

  if (info.subresource) {
    return subresource(ctx, req, info, plain, (t) => send(res, rec, ctx, 200, t, "text/plain"));
  }

  switch (info.verb) {
    case "watch": {
      const matches = selectors(info, params);
      validateWatch(params);
      const rv = params.get("resourceVersion") ?? "";
      if (rv !== "" && !/^\d+$/.test(rv)) throw badRequest(`invalid resource version: ${rv}`);
      rec.status = 200;
      ctx.updated(rec);
      let cancel = () => {};
      cancel = serveWatch(
        store,
        {
          def,
          namespace: info.namespace,
          name: info.name,
          matches,
          rep,
          params,
          bookmarkIntervalMs: ctx.bookmarkIntervalMs,
        },
        res,
        () => ctx.watches.delete(cancel),
      );
      ctx.watches.add(cancel);
      return;
    }
    case "get": {
      const o = store.get(def, ns, info.name);
      if (!o) throw notFound(def, info.name);
      return ok(200, o);
    }
    case "list":
      return list(ctx, info, params, rep, (status, body) => {
        rec.status = status;
        send(res, rec, ctx, status, body, contentTypeFor(rep));
      });
    case "create": {
      const body = decodeBody(await readBody(req), String(req.headers["content-type"] ?? ""));
      return ok(201, create(store, def, info.namespace, body, params));
    }
    case "update": {
      const body = decodeBody(await readBody(req), String(req.headers["content-type"] ?? ""));
      return ok(200, update(store, def, ns, info.name, body, false));
    }
    case "patch": {
      const text = new TextDecoder().decode(await readBody(req));
      const cur = store.get(def, ns, info.name);
      if (!cur) {
        if (String(req.headers["content-type"]).startsWith("application/apply-patch")) {
          return ok(
            201,
            create(
              store,
              def,
              info.namespace,
              applyPatch({}, String(req.headers["content-type"]), text),
              params,
            ),
          );
        }
        throw notFound(def, info.name);
      }
      const patched = applyPatch(cur, String(req.headers["content-type"] ?? ""), text);
      const rv = meta(patched).resourceVersion;
      if (rv === meta(cur).resourceVersion) delete meta(patched).resourceVersion;
      return ok(200, update(store, def, ns, info.name, patched, false));
    }
    case "delete": {
      const o = store.get(def, ns, info.name);
      if (!o) throw notFound(def, info.name);
      if (def === NAMESPACES) return ok(200, deleteNamespace(store, info.name));
      const gone = store.delete(def, ns, info.name);
      if (def === PODS) return ok(200, gone);
      const d: Obj = { name: info.name };
      if (def.group) d.group = def.group;
      d.kind = def.resource;
      d.uid = meta(gone).uid;
      return plain(200, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details: d });
    }
    case "deletecollection": {
      const matches = selectors(info, params);
      const items = store.list(def, ns).filter(matches).map((o) =>
        store.delete(def, ns ?? String(meta(o).namespace), String(meta(o).name))
      );
      return plain(200, {
        kind: `${def.kind}List`,
        apiVersion: groupVersion(def),
        metadata: { resourceVersion: String(store.rv) },
        items,
      });
    }
    default:
      throw methodNotAllowed();
  }
}

function list(
  ctx: HandlerContext,
  info: ResourceRequest,
  params: URLSearchParams,
  rep: Representation,
  reply: (status: number, body: Obj) => void,
): void {
  const { def } = info;
  const store = ctx.store;
  const matches = selectors(info, params);
  const cont = params.get("continue");
  let rv = store.rv;
  let start = "";
  if (cont) {
    const t = decodeContinue(cont);
    if (t.rv < store.oldestRv) throw continueExpired();
    rv = t.rv;
    start = t.start;
  }
  let items = store.list(def, def.namespaced ? info.namespace || undefined : undefined).filter(matches);
  if (start) items = items.filter((o) => objKey(o) > start);
  const limit = Number(params.get("limit") ?? "0");
  const listMeta: Obj = { resourceVersion: String(rv) };
  if (limit > 0 && items.length > limit) {
    const page = items.slice(0, limit);
    listMeta.continue = encodeContinue({ rv, start: objKey(page[page.length - 1]) });
    if (!params.get("labelSelector") && !params.get("fieldSelector")) {
      listMeta.remainingItemCount = items.length - limit;
    }
    items = page;
  }
  reply(200, representList(def, items, rep, listMeta));
}

function create(
  store: ObjectStore,
  def: ResourceDef,
  urlNs: string,
  body: Obj,
  params: URLSearchParams,
): Obj {
  const m = meta(body);
  if (def.namespaced) {
    if (m.namespace && m.namespace !== urlNs) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    m.namespace = urlNs;
    if (!store.get(NAMESPACES, undefined, urlNs)) throw notFound(NAMESPACES, urlNs);
  }
  if (!m.name && m.generateName) m.name = `${m.generateName}${Math.random().toString(36).slice(2, 7)}`;
  if (!m.name) {
    throw invalid(def.kind, "", "metadata.name", "Required value", "name or generateName is required");
  }
  if (m.resourceVersion) {
    throw badRequest("resourceVersion should not be set on objects to be created");
  }
  body.kind = def.kind;
  body.apiVersion = groupVersion(def);
  if (def === NAMESPACES) body.status = { phase: "Active", ...(body.status as Obj ?? {}) };
  if (def === PODS) {
    body.status = { phase: "Pending", qosClass: "BestEffort", ...(body.status as Obj ?? {}) };
    addDefaultTolerations(body); // the DefaultTolerationSeconds admission plugin
  }
  if (params.has("dryRun")) {
    const out = structuredClone(body);
    Object.assign(meta(out), { uid: crypto.randomUUID(), creationTimestamp: timestamp(), generation: 1 });
    return out;
  }
  return store.create(def, body);
}

function update(
  store: ObjectStore,
  def: ResourceDef,
  ns: string | undefined,
  name: string,
  body: Obj,
  statusOnly: boolean,
): Obj {
  const cur = store.get(def, ns, name);
  if (!cur) throw notFound(def, name);
  const m = meta(body);
  if (m.name !== undefined && m.name !== name) {
    throw badRequest(`the name of the object (${m.name}) does not match the name on the URL (${name})`);
  }
  if (def.namespaced && m.namespace && m.namespace !== ns) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  let next: Obj;
  if (statusOnly) {
    next = { ...cur, status: body.status };
    meta(next).resourceVersion = m.resourceVersion;
  } else {
    next = { ...body, kind: def.kind, apiVersion: groupVersion(def) };
    meta(next).name = name;
    if (def.subresources.status) next.status = cur.status;
    if (def === PODS) validatePodUpdate(cur, next);
  }
  if (ns !== undefined) meta(next).namespace = ns;
  return store.update(def, next);
}

function deleteNamespace(store: ObjectStore, name: string): Obj {
  for (const d of namespacedResources()) {
    for (const o of store.list(d, name)) store.delete(d, name, String(meta(o).name));
  }
  const gone = store.delete(NAMESPACES, undefined, name);
  meta(gone).deletionTimestamp = timestamp();
  gone.status = { phase: "Terminating" };
  return gone;
}

function namespacedResources(): ResourceDef[] {
  return RESOURCES.filter((r) => r.namespaced);
}

async function subresource(
  ctx: HandlerContext,
  req: IncomingMessage,
  info: ResourceRequest,
  reply: (status: number, obj: Obj) => void,
  replyText: (text: string) => void,
): Promise<void> {
  const { def, store } = { def: info.def, store: ctx.store };
  const ns = def.namespaced ? info.namespace : undefined;
  const cur = store.get(def, ns, info.name);
  if (!cur) throw notFound(def, info.name);
  const method = req.method ?? "GET";
  const contentType = String(req.headers["content-type"] ?? "");
  switch (info.subresource) {
    case "status": {
      if (method === "GET") return reply(200, cur);
      const raw = await readBody(req);
      const body = method === "PATCH"
        ? applyPatch(cur, contentType, new TextDecoder().decode(raw))
        : decodeBody(raw, contentType);
      if (method === "PATCH" && meta(body).resourceVersion === meta(cur).resourceVersion) {
        delete meta(body).resourceVersion;
      }
      if (method !== "PUT" && method !== "PATCH") throw methodNotAllowed();
      return reply(200, update(store, def, ns, info.name, body, true));
    }
    case "scale": {
      const scaleOf = (d: Obj): Obj => {
        const spec = (d.spec ?? {}) as Obj;
        const sel = ((spec.selector as Obj | undefined)?.matchLabels ?? {}) as Record<string, string>;
        const m = meta(d);
        return {
          kind: "Scale",
          apiVersion: "autoscaling/v1",
          metadata: {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resourceVersion: m.resourceVersion,
            creationTimestamp: m.creationTimestamp,
          },
          spec: { replicas: spec.replicas ?? 1 },
          status: {
            replicas: ((d.status ?? {}) as Obj).replicas ?? 0,
            selector: Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(","),
          },
        };
      };
      if (method === "GET") return reply(200, scaleOf(cur));
      const raw = await readBody(req);
      const scale = method === "PATCH"
        ? applyPatch(scaleOf(cur), contentType, new TextDecoder().decode(raw))
        : decodeBody(raw, contentType);
      if (method !== "PUT" && method !== "PATCH") throw methodNotAllowed();
      const next = structuredClone(cur);
      (next.spec as Obj).replicas = Number(((scale.spec ?? {}) as Obj).replicas ?? 0);
      const srv = meta(scale).resourceVersion;
      meta(next).resourceVersion = method === "PUT" && srv ? srv : undefined;
      return reply(200, scaleOf(store.update(def, next)));
    }
    case "log": {
      if (method !== "GET") throw methodNotAllowed();
      const lines = [`${timestamp()} starting ${info.name}`, `${timestamp()} ready`];
      return replyText(lines.join("\n") + "\n");
    }
    case "exec":
      throw badRequest("Upgrade request required");
    case "token": {
      if (method !== "POST") throw methodNotAllowed();
      const body = decodeBody(await readBody(req), contentType);
      const spec = (body.spec ?? {}) as Obj;
      const seconds = Number(spec.expirationSeconds ?? 3600);
      const exp = new Date(Date.now() + seconds * 1000);
      const payload = btoa(JSON.stringify({
        sub: `system:serviceaccount:${info.namespace}:${info.name}`,
        aud: spec.audiences ?? ["https://kubernetes.default.svc"],
        exp: Math.floor(exp.getTime() / 1000),
      })).replace(/=+$/, "");
      return reply(201, {
        kind: "TokenRequest",
        apiVersion: "authentication.k8s.io/v1",
        metadata: { name: info.name, namespace: info.namespace, creationTimestamp: null },
        spec: {
          audiences: spec.audiences ?? ["https://kubernetes.default.svc"],
          expirationSeconds: seconds,
          boundObjectRef: spec.boundObjectRef ?? null,
        },
        status: {
          token: `eyJhbGciOiJSUzI1NiJ9.${payload}.fake-signature`,
          expirationTimestamp: timestamp(exp),
        },
      });
    }
  }
  throw pathNotFound();
}
