/**
 * Request info: what resource, namespace, name and verb a path and method name, as the real
 * apiserver's RequestInfoFactory derives them.
 */
import { findResource, type ResourceDef } from "./resources.ts";

/** A resource request's parsed attributes. */
export interface ResourceRequest {
  def: ResourceDef;
  namespace: string;
  name: string;
  subresource: string;
  verb: string;
  /** Path used the legacy /watch/ prefix. */
  legacyWatch: boolean;
}

/** Resolves an API path; undefined when the path is not a known resource path. */
export function parseResourcePath(
  method: string,
  path: string,
  params: URLSearchParams,
): ResourceRequest | undefined | "unknown" {
  const parts = path.split("/").filter((p) => p !== "");
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === "api" && parts.length >= 3) {
    group = "";
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 4) {
    group = parts[1];
    version = parts[2];
    rest = parts.slice(3);
  } else return undefined;
  let legacyWatch = false;
  if (rest[0] === "watch") {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  let namespace = "";
  if (rest[0] === "namespaces" && rest.length > 1) {
    namespace = rest[1];
    if (rest.length > 2 && rest[2] !== "status" && rest[2] !== "finalize") rest = rest.slice(2);
  }
  const [resource, name = "", subresource = "", ...extra] = rest;
  if (!resource || extra.length > 0) return "unknown";
  const def = findResource(group, version, resource);
  if (!def) return "unknown";
  if (def.resource === "namespaces") namespace = name;
  const watch = legacyWatch || queryBool(params, "watch");
  let verb: string;
  switch (method) {
    case "GET":
    case "HEAD":
      verb = watch ? "watch" : name ? "get" : "list";
      break;
    case "POST":
      verb = "create";
      break;
    case "PUT":
      verb = "update";
      break;
    case "PATCH":
      verb = "patch";
      break;
    case "DELETE":
      verb = name ? "delete" : "deletecollection";
      break;
    default:
      verb = method.toLowerCase();
  }
  return { def, namespace, name, subresource, verb, legacyWatch };
}

/**
 * A boolean query parameter as the apiserver decodes it (apimachinery's
 * Convert_Slice_string_To_bool): absent, "0" or "false" (any case) is false, anything else true,
 * so python3-kubernetes' `watch=True` is a watch.
 */
export function queryBool(params: URLSearchParams, name: string): boolean {
  const v = params.get(name);
  return v !== null && v !== "0" && v.toLowerCase() !== "false";
}
