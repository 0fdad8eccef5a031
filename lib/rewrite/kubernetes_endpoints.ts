/**
 * Rewrites the `default/kubernetes` Endpoints and the EndpointSlices of the `kubernetes` Service so
 * their addresses are the node's lite-apiserver (the way kube-proxy must see them for in-cluster
 * clients to reach the API through it). Pure: JSON objects, lists, Tables and watch lines in,
 * rewritten copies out; anything else is returned unchanged.
 */
import { Buffer } from "node:buffer";
import { scanItems } from "../cache/list_codec.ts";

/** Where the node's in-cluster clients should be sent: lite-apiserver's node address and port. */
export interface ServiceEndpoint {
  ip: string;
  port: number;
}

/** Which collection an answer is about (the request's resource). */
export type EndpointsResource = "endpoints" | "endpointslices";

type Obj = Record<string, unknown>;

const NAMESPACE = "default";
const SERVICE = "kubernetes";
const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
const DEFAULT_PORT = { name: "https", protocol: "TCP" };

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function meta(o: Obj): Obj {
  return isObj(o.metadata) ? o.metadata : {};
}

export function isIPv6(ip: string): boolean {
  return ip.includes(":");
}

/** True for the objects this module rewrites (by kind, namespace, name or service-name label). */
export function isKubernetesServiceEndpoints(o: unknown): boolean {
  if (!isObj(o)) return false;
  const m = meta(o);
  if (m.namespace !== NAMESPACE) return false;
  if (o.kind === "Endpoints") return m.name === SERVICE;
  if (o.kind === "EndpointSlice") {
    return isObj(m.labels) && m.labels[SERVICE_NAME_LABEL] === SERVICE;
  }
  return false;
}

/** The upstream's port entries (names kept, so they still match the Service's port), with our port. */
function ports(upstream: unknown, port: number): Obj[] {
  const list = Array.isArray(upstream) ? upstream.filter(isObj) : [];
  if (list.length === 0) return [{ ...DEFAULT_PORT, port }];
  return list.map((p) => ({ ...p, port }));
}

function rewriteEndpoints(o: Obj, to: ServiceEndpoint): Obj {
  const subsets = Array.isArray(o.subsets) ? o.subsets.filter(isObj) : [];
  return {
    ...o,
    subsets: [{ addresses: [{ ip: to.ip }], ports: ports(subsets[0]?.ports, to.port) }],
  };
}

function rewriteSlice(o: Obj, to: ServiceEndpoint): Obj {
  const family = isIPv6(to.ip) ? "IPv6" : "IPv4";
  // A dual-stack cluster has one slice per family: the other family's slice is emptied, so
  // kube-proxy never sends that family to the cloud behind our back.
  const endpoints = o.addressType === family
    ? [{ addresses: [to.ip], conditions: { ready: true, serving: true, terminating: false } }]
    : [];
  return { ...o, endpoints, ports: ports(o.ports, to.port) };
}

/** The object rewritten when it is one of ours; otherwise the same object. */
export function rewriteObject(o: unknown, to: ServiceEndpoint): unknown {
  if (!isKubernetesServiceEndpoints(o)) return o;
  const obj = o as Obj;
  return obj.kind === "Endpoints" ? rewriteEndpoints(obj, to) : rewriteSlice(obj, to);
}

function hostPort(ip: string, port: number): string {
  return isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

interface Column {
  name?: unknown;
}
interface Row {
  cells?: unknown[];
  object?: unknown;
}

/**
 * A Table row about one of ours: its object (full, or PartialObjectMetadata with labels), or,
 * without one, its Name cell in a Table of the default namespace.
 */
function rowIsOurs(
  row: Row,
  resource: EndpointsResource,
  requestNamespace: string,
  nameCol: number,
): boolean {
  if (isObj(row.object)) {
    const m = meta(row.object);
    if (m.namespace !== NAMESPACE) return false;
    if (resource === "endpoints") return m.name === SERVICE;
    return isObj(m.labels) && m.labels[SERVICE_NAME_LABEL] === SERVICE;
  }
  return requestNamespace === NAMESPACE && nameCol >= 0 && row.cells?.[nameCol] === SERVICE;
}

function rewriteTable(
  t: Obj,
  to: ServiceEndpoint,
  resource: EndpointsResource,
  requestNamespace: string,
): Obj {
  if (!Array.isArray(t.rows) || !Array.isArray(t.columnDefinitions)) return t;
  const names = (t.columnDefinitions as Column[]).map((c) => (isObj(c) ? c.name : undefined));
  const nameCol = names.indexOf("Name");
  const endpointsCol = names.indexOf("Endpoints");
  const portsCol = names.indexOf("Ports");
  const rows = (t.rows as Row[]).map((row) => {
    if (!isObj(row) || !rowIsOurs(row, resource, requestNamespace, nameCol)) return row;
    const cells = Array.isArray(row.cells) ? [...row.cells] : [];
    if (resource === "endpoints") {
      if (endpointsCol >= 0) cells[endpointsCol] = hostPort(to.ip, to.port);
    } else {
      // The slice's family: from its full object, else from the AddressType cell.
      const object = isObj(row.object) && row.object.kind === "EndpointSlice" ? row.object : undefined;
      const addressType = object ? object.addressType : cells[names.indexOf("AddressType")];
      const sameFamily = addressType === undefined || addressType === (isIPv6(to.ip) ? "IPv6" : "IPv4");
      if (endpointsCol >= 0) cells[endpointsCol] = sameFamily ? to.ip : "<unset>";
      if (portsCol >= 0) cells[portsCol] = String(to.port);
    }
    return { ...row, cells, object: rewriteObject(row.object, to) };
  });
  return { ...t, rows };
}

/**
 * A whole answer (object, list, or Table) rewritten. `requestNamespace` is the request's namespace
 * ("" for all namespaces): it identifies rows of Tables sent without their objects.
 */
export function rewriteDocument(
  doc: unknown,
  to: ServiceEndpoint,
  resource: EndpointsResource,
  requestNamespace: string,
): unknown {
  if (!isObj(doc)) return doc;
  if (doc.kind === "Table") return rewriteTable(doc, to, resource, requestNamespace);
  if (Array.isArray(doc.items)) {
    const kind = itemKind(doc);
    let changed = false;
    const items = doc.items.map((item) => {
      const out = rewriteItem(item, kind, to);
      if (out !== item) changed = true;
      return out;
    });
    return changed ? { ...doc, items } : doc;
  }
  return rewriteObject(doc, to);
}

/** A list item (typed lists' items carry no kind of their own: kept that way). */
function rewriteItem(item: unknown, kind: string, to: ServiceEndpoint): unknown {
  if (!isObj(item) || item.kind) return rewriteObject(item, to);
  const typed = { ...item, kind };
  if (!isKubernetesServiceEndpoints(typed)) return item;
  const { kind: _kind, ...rest } = rewriteObject(typed, to) as Obj;
  return rest;
}

/** `EndpointsList` → `Endpoints`, `EndpointSliceList` → `EndpointSlice`. */
function itemKind(list: Obj): string {
  return typeof list.kind === "string" ? list.kind.replace(/List$/, "") : "";
}

/** Cheap pre-check: an answer that never mentions the Service cannot need rewriting. */
function mayNeedRewrite(text: string): boolean {
  return text.includes(`"${SERVICE}"`);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

const NEEDLE = enc.encode(`"${SERVICE}"`);

function bytesOf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** A JSON body rewritten; the same bytes when nothing in it is ours or it is not JSON. */
export function rewriteBody(
  body: Uint8Array,
  to: ServiceEndpoint,
  resource: EndpointsResource,
  requestNamespace: string,
): Uint8Array {
  if (bytesOf(body).indexOf(NEEDLE) < 0) return body;
  const list = rewriteListItems(body, to);
  if (list) return list;
  let doc: unknown;
  try {
    doc = JSON.parse(dec.decode(body));
  } catch {
    return body;
  }
  const out = rewriteDocument(doc, to, resource, requestNamespace);
  return out === doc ? body : enc.encode(JSON.stringify(out));
}

/**
 * A list (`items`) rewritten item by item: only the items that mention the Service are parsed and
 * re-encoded; every other byte is kept. undefined when the body is not such a list.
 */
function rewriteListItems(body: Uint8Array, to: ServiceEndpoint): Uint8Array | undefined {
  const bounds = scanItems(body);
  if (!bounds) return undefined;
  let envelope: unknown;
  try {
    envelope = JSON.parse(
      dec.decode(body.subarray(0, bounds.open + 1)) + dec.decode(body.subarray(bounds.close)),
    );
  } catch {
    return undefined;
  }
  if (!isObj(envelope) || envelope.kind === "Table") return undefined;
  const kind = itemKind(envelope);
  const hay = bytesOf(body);
  const parts: Uint8Array[] = [];
  let kept = 0;
  let hit = -1;
  for (const [from, end] of bounds.items) {
    // One forward scan for the next mention, not one per item.
    if (hit < from) hit = hay.indexOf(NEEDLE, from);
    if (hit < 0) break;
    if (hit >= end) continue;
    let item: unknown;
    try {
      item = JSON.parse(dec.decode(body.subarray(from, end)));
    } catch {
      return undefined;
    }
    const out = rewriteItem(item, kind, to);
    if (out === item) continue;
    parts.push(body.subarray(kept, from), enc.encode(JSON.stringify(out)));
    kept = end;
  }
  if (parts.length === 0) return body;
  parts.push(body.subarray(kept));
  return Buffer.concat(parts);
}

/** One watch event line (`{"type":…,"object":…}`, no newline) rewritten; others unchanged. */
export function rewriteWatchLine(
  line: string,
  to: ServiceEndpoint,
  resource: EndpointsResource,
  requestNamespace: string,
): string {
  if (!mayNeedRewrite(line)) return line;
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch {
    return line;
  }
  if (!isObj(ev) || !["ADDED", "MODIFIED", "DELETED"].includes(String(ev.type))) return line;
  const object = rewriteDocument(ev.object, to, resource, requestNamespace);
  return object === ev.object ? line : JSON.stringify({ ...ev, object });
}
