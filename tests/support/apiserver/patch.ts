/**
 * PATCH bodies: JSON merge patch, strategic merge patch (applied as a merge patch, directives
 * dropped) and JSON patch.
 */
import { parse as parseYaml } from "yaml";
import { ApiError, badRequest, unsupportedMediaType } from "./status.ts";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** RFC 7386 merge patch. Keys starting with `$` (strategic directives) are ignored. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return structuredClone(patch);
  const out: Obj = isObj(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`invalid JSON pointer: ${path}`);
  return path.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: unknown, parts: string[]): [Obj | unknown[], string] {
  let cur: unknown = doc;
  for (const p of parts.slice(0, -1)) {
    cur = Array.isArray(cur) ? cur[Number(p)] : (cur as Obj | undefined)?.[p];
    if (cur === undefined) throw new ApiError(422, "Invalid", `doc is missing path: ${parts.join("/")}`);
  }
  return [cur as Obj | unknown[], parts[parts.length - 1]];
}

function getAt(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const p of pointer(path)) cur = Array.isArray(cur) ? cur[Number(p)] : (cur as Obj | undefined)?.[p];
  return cur;
}

function removeAt(doc: unknown, path: string): unknown {
  const [parent, last] = parentOf(doc, pointer(path));
  if (Array.isArray(parent)) return parent.splice(Number(last), 1)[0];
  if (!(last in parent)) throw new ApiError(422, "Invalid", `doc is missing key: ${path}`);
  const v = parent[last];
  delete parent[last];
  return v;
}

function addAt(doc: unknown, path: string, value: unknown, replace: boolean): unknown {
  const parts = pointer(path);
  if (parts.length === 0) return structuredClone(value);
  const [parent, last] = parentOf(doc, parts);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (replace) parent[i] = structuredClone(value);
    else parent.splice(i, 0, structuredClone(value));
  } else {
    if (replace && !(last in parent)) throw new ApiError(422, "Invalid", `doc is missing key: ${path}`);
    parent[last] = structuredClone(value);
  }
  return doc;
}

/** JSON equality regardless of key order (RFC 6902 `test`). */
function deepEqual(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
      a.every((v, i) => deepEqual(v, b[i]));
  }
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return a === b;
}

/** RFC 6902 JSON patch. */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest("json patch must be an array of operations");
  let out = structuredClone(doc);
  for (const op of ops as Obj[]) {
    const path = String(op.path ?? "");
    switch (op.op) {
      case "add":
        out = addAt(out, path, op.value, false);
        break;
      case "replace":
        out = addAt(out, path, op.value, true);
        break;
      case "remove":
        removeAt(out, path);
        break;
      case "move": {
        const v = removeAt(out, String(op.from));
        out = addAt(out, path, v, false);
        break;
      }
      case "copy":
        out = addAt(out, path, getAt(out, String(op.from)), false);
        break;
      case "test":
        if (!deepEqual(getAt(out, path), op.value)) {
          throw new ApiError(422, "Invalid", `testing value ${path} failed`);
        }
        break;
      default:
        throw badRequest(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return out;
}

/** Applies a PATCH body of the given Content-Type to an object. */
export function applyPatch(obj: Obj, contentType: string, body: string): Obj {
  const type = contentType.split(";")[0].trim();
  let parsed: unknown;
  try {
    parsed = type === "application/apply-patch+yaml" ? parseYaml(body) : JSON.parse(body);
  } catch (e) {
    throw badRequest(`error decoding patch: ${(e as Error).message}`);
  }
  switch (type) {
    case "application/merge-patch+json":
    case "application/strategic-merge-patch+json":
    case "application/apply-patch+yaml":
      return mergePatch(obj, parsed) as Obj;
    case "application/json-patch+json":
      return jsonPatch(obj, parsed) as Obj;
    default:
      throw unsupportedMediaType(contentType);
  }
}
