/**
 * What a Kubernetes API request is about, read from its method and URL alone.
 *
 * Follows the rules of the apiserver's RequestInfoFactory (k8s.io/apiserver
 * pkg/endpoints/request/requestinfo.go), with two deliberate differences that suit a cache:
 * - a `fieldSelector=metadata.name=X` list stays a list with no name (its cache key is a list key);
 * - the Namespace object (`/api/v1/namespaces/{name}`) is cluster-scoped: namespace is "".
 * Pure: never throws, whatever the input.
 */

export interface RequestInfo {
  /** False for /version, /api, /apis, /api/v1, /apis/{g}/{v} (discovery), /healthz, /openapi/... */
  isResourceRequest: boolean;
  /**
   * Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection, proxy) for
   * resource requests; the lower-cased method (get, post, ...) for non-resource requests.
   */
  verb: string;
  /** The URL path as received (still percent-encoded), without the query. */
  path: string;
  apiPrefix: "api" | "apis" | "";
  /** "" for the core group. */
  group: string;
  version: string;
  /** e.g. `pods`. */
  resource: string;
  /** e.g. `status`, `log`, `exec`, `token`, or "". */
  subresource: string;
  /** "" for cluster-scoped and all-namespaces requests. */
  namespace: string;
  name: string;
  /** Raw `labelSelector` query value ("" if none). */
  labelSelector: string;
  /** Raw `fieldSelector` query value ("" if none). */
  fieldSelector: string;
  query: URLSearchParams;
}

/** Verbs given by a path prefix (`/api/v1/watch/...`, `/api/v1/proxy/...`). */
const SPECIAL_VERBS = new Set(["watch", "proxy"]);
/** Path steps after `/namespaces/{name}/` that are subresources of the Namespace itself. */
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);

const METHOD_VERBS: Record<string, string> = {
  GET: "get",
  HEAD: "get",
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  DELETE: "delete",
};

/** strconv.ParseBool's true spellings, as the apiserver reads `watch=`. */
/**
 * A boolean query parameter read as the apiserver reads it (apimachinery's
 * Convert_Slice_string_To_bool): absent is false, "0" and "false" (any case) are false, and
 * anything else, even an empty value or "yes", is true.
 */
export function queryFlag(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  return v !== null && v !== "0" && v.toLowerCase() !== "false";
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Splits a request target into its raw path and query, tolerating absolute-form URLs. */
function splitTarget(url: string): { path: string; rawQuery: string } {
  let target = url.split("#", 1)[0];
  const abs = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?]*/.exec(target);
  if (abs) target = target.slice(abs[0].length);
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  return { path: path === "" ? "/" : path, rawQuery: q < 0 ? "" : target.slice(q + 1) };
}

/**
 * Parses a request into a RequestInfo.
 * @param method HTTP method (any case).
 * @param url path and query as received (e.g. `req.url`), or an absolute URL.
 */
export function parseRequestInfo(method: string, url: string): RequestInfo {
  const { path, rawQuery } = splitTarget(url);
  let query: URLSearchParams;
  try {
    query = new URLSearchParams(rawQuery);
  } catch {
    query = new URLSearchParams();
  }
  const upper = method.toUpperCase();
  const info: RequestInfo = {
    isResourceRequest: false,
    verb: method.toLowerCase(),
    path,
    apiPrefix: "",
    group: "",
    version: "",
    resource: "",
    subresource: "",
    namespace: "",
    name: "",
    labelSelector: query.get("labelSelector") ?? "",
    fieldSelector: query.get("fieldSelector") ?? "",
    query,
  };

  const trimmed = path.replace(/^\/+|\/+$/g, "");
  let parts = trimmed === "" ? [] : trimmed.split("/").map(decodeSegment);
  if (parts.length < 3) return info;
  const prefix = parts[0];
  if (prefix !== "api" && prefix !== "apis") return info;
  parts = parts.slice(1);
  let group = "";
  if (prefix === "apis") {
    if (parts.length < 3) return info;
    group = parts[0];
    parts = parts.slice(1);
  }
  const version = parts[0];
  parts = parts.slice(1);

  let verb: string;
  if (SPECIAL_VERBS.has(parts[0])) {
    // `/api/v1/watch` alone names no resource: the apiserver rejects it; we call it non-resource.
    if (parts.length < 2) return info;
    verb = parts[0];
    parts = parts.slice(1);
  } else {
    verb = METHOD_VERBS[upper] ?? method.toLowerCase();
  }

  let namespace = "";
  if (parts[0] === "namespaces" && parts.length > 1) {
    // `/namespaces/{ns}/{resource}...` scopes a resource; `/namespaces/{name}[/status|finalize]` is the
    // Namespace object itself, which is cluster-scoped (the apiserver sets namespace=name for authz only).
    if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2])) {
      namespace = parts[1];
      parts = parts.slice(2);
    }
  }

  const resource = parts[0] ?? "";
  const name = parts.length >= 2 ? parts[1] : "";
  const subresource = parts.length >= 3 ? parts[2] : "";

  if (name === "" && verb === "get") verb = queryFlag(query, "watch") ? "watch" : "list";
  else if (name !== "" && verb === "get" && queryFlag(query, "watch")) verb = "watch";
  if (name === "" && verb === "delete") verb = "deletecollection";

  return {
    ...info,
    isResourceRequest: true,
    verb,
    apiPrefix: prefix,
    group,
    version,
    resource,
    subresource,
    namespace,
    name,
  };
}
