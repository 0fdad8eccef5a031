/**
 * metav1.Status errors worded as the real kube-apiserver words them.
 */
import { qualifiedResource } from "./resources.ts";

/** A failure to answer with a Status body. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  /** The Status object the server sends. */
  body(): Record<string, unknown> {
    const b: Record<string, unknown> = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
    };
    if (this.details) b.details = this.details;
    b.code = this.code;
    return b;
  }
}

interface Res {
  group: string;
  resource: string;
}

function details(r: Res, name?: string): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  if (name) d.name = name;
  if (r.group) d.group = r.group;
  d.kind = r.resource;
  return d;
}

/** 404 `pods "x" not found`. */
export function notFound(r: Res, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(r)} "${name}" not found`, details(r, name));
}

/** 404 for a path no handler serves. */
export function pathNotFound(): ApiError {
  return new ApiError(404, "NotFound", "the server could not find the requested resource", {});
}

/** 409 AlreadyExists. */
export function alreadyExists(r: Res, name: string): ApiError {
  return new ApiError(
    409,
    "AlreadyExists",
    `${qualifiedResource(r)} "${name}" already exists`,
    details(r, name),
  );
}

/** 409 Conflict on a stale resourceVersion. */
export function conflict(r: Res, name: string): ApiError {
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedResource(r)} "${name}": the object has been modified; ` +
      "please apply your changes to the latest version and try again",
    details(r, name),
  );
}

/** 410 Expired for a watch from a compacted resourceVersion. */
export function tooOld(requested: number, oldest: number): ApiError {
  return new ApiError(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

/** 410 Expired for a continue token whose snapshot is gone. */
export function continueExpired(): ApiError {
  return new ApiError(
    410,
    "Expired",
    "The provided continue parameter is too old to display a consistent list result. You can start a new " +
      "list without the continue parameter, or use the continue token in this response to retrieve the " +
      "remainder of the results. Continuing with the provided token results in an inconsistent list - " +
      "objects that were created, modified, or deleted between the time the first chunk was returned and " +
      "now may show up in the list.",
  );
}

/** 400 BadRequest. */
export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

/** 422 Invalid with one cause. */
export function invalid(kind: string, name: string, field: string, type: string, detail: string): ApiError {
  const r = kind === "" ? "" : `${kind} "${name}" is invalid: `;
  return new ApiError(422, "Invalid", `${r}${field}: ${type}: ${detail}`, {
    name,
    kind,
    causes: [{ reason: `Field${type.replace(/ /g, "")}`, message: `${type}: ${detail}`, field }],
  });
}

/** 401 Unauthorized. */
export function unauthorized(): ApiError {
  return new ApiError(401, "Unauthorized", "Unauthorized");
}

/** The attributes an authorization decision is about. */
export interface AuthzAttributes {
  user: string;
  verb: string;
  resourceRequest: boolean;
  path: string;
  group: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

/** 403 Forbidden, message as RBAC's forbiddenMessage builds it. */
export function forbidden(a: AuthzAttributes): ApiError {
  if (!a.resourceRequest) {
    return new ApiError(
      403,
      "Forbidden",
      `forbidden: User "${a.user}" cannot ${a.verb} path "${a.path}"`,
      {},
    );
  }
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const where = a.namespace ? `in the namespace "${a.namespace}"` : "at the cluster scope";
  const why = `User "${a.user}" cannot ${a.verb} resource "${res}" in API group "${a.group}" ${where}`;
  const qr = qualifiedResource(a);
  const msg = a.name ? `${qr} "${a.name}" is forbidden: ${why}` : `${qr} is forbidden: ${why}`;
  return new ApiError(403, "Forbidden", msg, details(a, a.name));
}

/** 405 MethodNotAllowed. */
export function methodNotAllowed(): ApiError {
  return new ApiError(
    405,
    "MethodNotAllowed",
    "the server does not allow this method on the requested resource",
    {},
  );
}

const MEDIA = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/** 406 NotAcceptable. */
export function notAcceptable(): ApiError {
  return new ApiError(406, "NotAcceptable", `only the following media types are accepted: ${MEDIA}`);
}

/** 415 UnsupportedMediaType. */
export function unsupportedMediaType(contentType: string): ApiError {
  return new ApiError(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: ${MEDIA}`,
    { causes: [{ reason: "UnexpectedServerResponse", message: contentType }] },
  );
}
