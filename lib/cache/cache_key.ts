/**
 * Cache keys: identity × (group, version, resource, namespace, name, subresource, normalised
 * selectors, other content-changing query parameters, representation).
 *
 * Layout (every segment filesystem-safe per lib/store/store.ts):
 * - resource: `core~v1~pods`, `apps~v1~deployments`; `_discovery` (/api, /apis..., /version,
 *   /openapi) or `_nonresource` (anything else) for non-resource requests;
 * - namespace: the namespace, or `_cluster`;
 * - name, lists: `_list[~l=<labels>][~f=<fields>][~q=<params>][~<rep>]`;
 * - name, objects: `<name>[~s=<subresource>][~q=<params>][~<rep>]`;
 * - name, non-resource: `<path>[~q=<params>][~<rep>]`.
 * `~<rep>` is left out for plain JSON. Encoded parts never contain `~` nor start with `_`, so
 * structural markers cannot collide with names. Pure and deterministic.
 */
import type { CacheKey } from "../store/store.ts";
import { encodePart, encodeSegment, finishSegment, isSegment } from "../store/segment.ts";
import type { RequestInfo } from "../request/request_info.ts";
import type { Representation } from "../request/representation.ts";
import {
  fieldSelectorIsMetadataOnly,
  namedFieldSelector,
  normaliseFieldSelector,
  normaliseLabelSelector,
  parseFieldSelector,
} from "../request/selectors.ts";

/** Query parameters that never change an answer's content: left out of keys. */
export const IGNORED_PARAMS: ReadonlySet<string> = new Set([
  "timeout",
  "timeoutSeconds",
  "limit",
  "continue",
  "watch",
  "resourceVersion",
  "resourceVersionMatch",
  "allowWatchBookmarks",
  "sendInitialEvents",
  "pretty",
]);

export { encodeSegment, MAX_SEGMENT } from "../store/segment.ts";

/**
 * The identity segment: an Identity.cacheId that is already a valid segment is kept as it is.
 * Throws for "" (an uncertain identity): no cache key exists without an identity.
 */
export function identitySegment(cacheId: string): string {
  if (cacheId === "") throw new Error("no cache key for a request whose identity is uncertain");
  return isSegment(cacheId) ? cacheId : encodeSegment(cacheId);
}

/** `core~v1~pods`; `apps~v1~deployments`. */
export function resourceSegment(group: string, version: string, resource: string): string {
  return finishSegment([group === "" ? "core" : group, version, resource].map(encodePart).join("~"));
}

function namespaceSegment(ns: string): string {
  return ns === "" ? "_cluster" : encodeSegment(ns);
}

function repSuffix(rep: Representation): string {
  return rep === "json" ? "" : `~${rep}`;
}

/**
 * Query parameters a plain get, list or watch answer depends on besides the selectors: the
 * apiserver decodes the rest into GetOptions/ListOptions and ignores names it does not know.
 */
const RESOURCE_CONTENT_PARAMS: ReadonlySet<string> = new Set(["includeObject"]);

/**
 * Content-changing query parameters other than the selectors, sorted: `~q=...` or "". Discovery
 * and /version answers depend on none; plain resource requests on RESOURCE_CONTENT_PARAMS only;
 * subresources and other paths on any parameter not in IGNORED_PARAMS. Junk parameters therefore
 * cannot mint new cache entries where they change nothing.
 */
function paramSuffix(info: RequestInfo): string {
  if (info.query.size === 0) return "";
  if (!info.isResourceRequest && DISCOVERY.test(info.path)) return "";
  const plainResource = info.isResourceRequest && info.subresource === "";
  const kept = [...info.query.entries()]
    .filter(([k]) =>
      !IGNORED_PARAMS.has(k) && k !== "labelSelector" && k !== "fieldSelector" &&
      (!plainResource || RESOURCE_CONTENT_PARAMS.has(k))
    )
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  if (kept.length === 0) return "";
  return "~q=" + encodePart(new URLSearchParams(kept).toString());
}

const DISCOVERY = /^\/(api|apis|version|openapi)(\/|$)/;

/** The selectors of a collection request; a named watch is a watch of `metadata.name=<name>`. */
interface ListShape {
  namespace: string;
  label: string;
  field: string;
}

/** Throws SelectorError when a selector is invalid. */
function listShape(info: RequestInfo): ListShape {
  return {
    namespace: info.namespace,
    label: normaliseLabelSelector(info.labelSelector),
    field: normaliseFieldSelector(namedFieldSelector(info.fieldSelector, info.name)),
  };
}

function listKey(identity: string, info: RequestInfo, shape: ListShape, rep: Representation): CacheKey {
  let name = "_list";
  if (shape.label !== "") name += "~l=" + encodePart(shape.label);
  if (shape.field !== "") name += "~f=" + encodePart(shape.field);
  name += paramSuffix(info) + repSuffix(rep);
  return resourceKey(identity, info, shape.namespace, name);
}

/** A key under the request's group/version/resource. */
function resourceKey(identity: string, info: RequestInfo, namespace: string, name: string): CacheKey {
  return {
    identity: identitySegment(identity),
    resource: resourceSegment(info.group, info.version, info.resource),
    namespace: namespaceSegment(namespace),
    name: finishSegment(name),
  };
}

/** True when the request is answered with a list key (a collection, or a named watch). */
function usesListKey(info: RequestInfo): boolean {
  return info.isResourceRequest &&
    (info.name === "" || (info.verb === "watch" && info.subresource === ""));
}

/**
 * The cache key of a request. Lists and watches (including a named watch, keyed as a list with
 * `metadata.name=<name>`) get a list key; named requests an object key; non-resource requests a key
 * under `_discovery` or `_nonresource`. Throws SelectorError when a selector is invalid.
 * @param identity the caller's Identity.cacheId.
 */
export function cacheKeyFor(identity: string, info: RequestInfo, rep: Representation): CacheKey {
  if (!info.isResourceRequest) {
    return {
      identity: identitySegment(identity),
      resource: DISCOVERY.test(info.path) ? "_discovery" : "_nonresource",
      namespace: "_cluster",
      name: finishSegment(encodePart(info.path) + paramSuffix(info) + repSuffix(rep)),
    };
  }
  if (usesListKey(info)) return listKey(identity, info, listShape(info), rep);
  let name = encodePart(info.name);
  if (info.subresource !== "") name += "~s=" + encodePart(info.subresource);
  name += paramSuffix(info) + repSuffix(rep);
  return resourceKey(identity, info, info.namespace, name);
}

/** The list key of a collection request (same as cacheKeyFor for lists and watches). */
export function listKeyFor(identity: string, info: RequestInfo, rep: Representation): CacheKey {
  return listKey(identity, info, listShape(info), rep);
}

/**
 * Keys of cached lists whose items are a superset of this collection request's answer, best first:
 * same namespace without selectors; all namespaces without selectors (namespaced requests); same
 * namespace with only the label or only the field part (when both are given); all namespaces with
 * the same selectors, then with only one part. The request's own key is never included.
 *
 * The caller must filter the items with the request's selectors and, for an all-namespaces list,
 * by namespace. Only representations whose items can be filtered get candidates: `json`, and
 * `pomlist` when the field selector uses only metadata fields. Throws SelectorError when a
 * selector is invalid.
 */
export function broaderListKeys(identity: string, info: RequestInfo, rep: Representation): CacheKey[] {
  if (!usesListKey(info)) return [];
  const own = listShape(info);
  if (rep !== "json" && rep !== "pomlist") return [];
  if (rep === "pomlist" && !fieldSelectorIsMetadataOnly(parseFieldSelector(own.field))) return [];

  const ns = own.namespace;
  const both = own.label !== "" && own.field !== "";
  const shapes: ListShape[] = [{ namespace: ns, label: "", field: "" }];
  if (ns !== "") shapes.push({ namespace: "", label: "", field: "" });
  if (both) {
    shapes.push({ namespace: ns, label: own.label, field: "" }, {
      namespace: ns,
      label: "",
      field: own.field,
    });
  }
  if (ns !== "") {
    shapes.push({ namespace: "", label: own.label, field: own.field });
    if (both) {
      shapes.push({ namespace: "", label: own.label, field: "" }, {
        namespace: "",
        label: "",
        field: own.field,
      });
    }
  }
  const seen = new Set([cacheKeyString(listKey(identity, info, own, rep))]);
  const out: CacheKey[] = [];
  for (const shape of shapes) {
    const key = listKey(identity, info, shape, rep);
    const id = cacheKeyString(key);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(key);
  }
  return out;
}

/** One string for a key (`identity/resource/namespace/name`), e.g. as a paging list id or a map key. */
export function cacheKeyString(key: CacheKey): string {
  return `${key.identity}/${key.resource}/${key.namespace}/${key.name}`;
}
