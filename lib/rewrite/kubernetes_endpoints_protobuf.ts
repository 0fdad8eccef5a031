/**
 * The same rewrite as kubernetes_endpoints.ts, on Kubernetes protobuf: enveloped objects and lists
 * (`k8s\0` + runtime.Unknown) and watch streams (4-byte big-endian length + a raw WatchEvent
 * {type = 1, object = 2 {raw = 1: an enveloped object}}). Only the fields it replaces are
 * re-encoded; every other field is copied byte for byte. Field numbers: k8s.io/api core/v1 and
 * discovery/v1 generated.proto, apimachinery meta/v1 generated.proto.
 */
import {
  bytesField,
  concatBytes,
  hasK8sMagic,
  K8S_MAGIC,
  readFields,
  stringField,
  varintField,
  type WireField,
} from "../protobuf/wire.ts";
import { isIPv6, type ServiceEndpoint } from "./kubernetes_endpoints.ts";

// ObjectMeta: name 1, namespace 3, labels 11 (entries: key 1, value 2).
const META = { name: 1, namespace: 3, labels: 11 };
// core/v1 Endpoints: metadata 1, subsets 2; EndpointSubset: addresses 1, ports 3;
// EndpointAddress: ip 1; EndpointPort: name 1, port 2, protocol 3.
const ENDPOINTS = { subsets: 2, addresses: 1, ports: 3, ip: 1, portName: 1, port: 2, protocol: 3 };
// discovery/v1 EndpointSlice: metadata 1, endpoints 2, ports 3, addressType 4; Endpoint: addresses 1,
// conditions 2 {ready 1, serving 2, terminating 3}; EndpointPort: name 1, protocol 2, port 3.
const SLICE = { endpoints: 2, ports: 3, addressType: 4, portName: 1, protocol: 2, port: 3 };
// Lists: metadata 1, items 2.
const ITEMS = 2;

function isOurs(kind: string, fields: WireField[]): boolean {
  const meta = fields.find((f) => f.field === 1 && f.data);
  if (!meta) return false;
  const m = readFields(meta.data!);
  if (stringField(m, META.namespace) !== "default") return false;
  if (kind === "Endpoints") return stringField(m, META.name) === "kubernetes";
  return m.some((f) => {
    if (f.field !== META.labels || !f.data) return false;
    const entry = readFields(f.data);
    return stringField(entry, 1) === "kubernetes.io/service-name" && stringField(entry, 2) === "kubernetes";
  });
}

/** Port entries with our port (other fields kept), or the default `https` port. */
function ports(
  upstream: Uint8Array[],
  portField: number,
  nameField: number,
  protocolField: number,
  port: number,
) {
  if (upstream.length === 0) {
    return [
      concatBytes([
        bytesField(nameField, "https"),
        bytesField(protocolField, "TCP"),
        varintField(portField, port),
      ]),
    ];
  }
  return upstream.map((p) =>
    concatBytes([
      ...readFields(p).filter((f) => f.field !== portField).map((f) => f.bytes),
      varintField(portField, port),
    ])
  );
}

function rewriteEndpoints(fields: WireField[], to: ServiceEndpoint): Uint8Array {
  const firstSubset = fields.find((f) => f.field === ENDPOINTS.subsets && f.data);
  const upstreamPorts = firstSubset
    ? readFields(firstSubset.data!).filter((f) => f.field === ENDPOINTS.ports && f.data).map((f) => f.data!)
    : [];
  const subset = concatBytes([
    bytesField(ENDPOINTS.addresses, bytesField(ENDPOINTS.ip, to.ip)),
    ...ports(upstreamPorts, ENDPOINTS.port, ENDPOINTS.portName, ENDPOINTS.protocol, to.port).map((p) =>
      bytesField(ENDPOINTS.ports, p)
    ),
  ]);
  const out: Uint8Array[] = [];
  let placed = false;
  for (const f of fields) {
    if (f.field !== ENDPOINTS.subsets) out.push(f.bytes);
    else if (!placed) {
      out.push(bytesField(ENDPOINTS.subsets, subset));
      placed = true;
    }
  }
  if (!placed) out.push(bytesField(ENDPOINTS.subsets, subset));
  return concatBytes(out);
}

function rewriteSlice(fields: WireField[], to: ServiceEndpoint): Uint8Array {
  const family = isIPv6(to.ip) ? "IPv6" : "IPv4";
  const endpoint = stringField(fields, SLICE.addressType) === family
    ? [
      bytesField(
        SLICE.endpoints,
        concatBytes([
          bytesField(1, to.ip),
          bytesField(2, concatBytes([varintField(1, true), varintField(2, true), varintField(3, false)])),
        ]),
      ),
    ]
    : [];
  const upstreamPorts = fields.filter((f) => f.field === SLICE.ports && f.data).map((f) => f.data!);
  const newPorts = ports(upstreamPorts, SLICE.port, SLICE.portName, SLICE.protocol, to.port).map((p) =>
    bytesField(SLICE.ports, p)
  );
  const out: Uint8Array[] = [];
  let placedEndpoints = false;
  let placedPorts = false;
  for (const f of fields) {
    if (f.field === SLICE.endpoints) {
      if (!placedEndpoints) out.push(...endpoint);
      placedEndpoints = true;
    } else if (f.field === SLICE.ports) {
      if (!placedPorts) out.push(...newPorts);
      placedPorts = true;
    } else out.push(f.bytes);
  }
  if (!placedEndpoints) out.push(...endpoint);
  if (!placedPorts) out.push(...newPorts);
  return concatBytes(out);
}

/** One object's raw message (no envelope) of `kind`, rewritten when it is ours; else the same bytes. */
function rewriteRawObject(kind: string, raw: Uint8Array, to: ServiceEndpoint): Uint8Array {
  const fields = readFields(raw);
  if (!isOurs(kind, fields)) return raw;
  return kind === "Endpoints" ? rewriteEndpoints(fields, to) : rewriteSlice(fields, to);
}

function rewriteRaw(kind: string, raw: Uint8Array, to: ServiceEndpoint): Uint8Array {
  if (kind === "Endpoints" || kind === "EndpointSlice") return rewriteRawObject(kind, raw, to);
  if (kind !== "EndpointsList" && kind !== "EndpointSliceList") return raw;
  const itemKind = kind.replace(/List$/, "");
  let changed = false;
  const parts = readFields(raw).map((f) => {
    if (f.field !== ITEMS || !f.data) return f.bytes;
    const item = rewriteRawObject(itemKind, f.data, to);
    if (item === f.data) return f.bytes;
    changed = true;
    return bytesField(ITEMS, item);
  });
  return changed ? concatBytes(parts) : raw;
}

/** An enveloped protobuf body (object or list) rewritten; the same bytes when nothing is ours. */
export function rewriteProtobufBody(body: Uint8Array, to: ServiceEndpoint): Uint8Array {
  if (!hasK8sMagic(body)) return body;
  try {
    const unknown = readFields(body.subarray(4));
    const typeMeta = unknown.find((f) => f.field === 1 && f.data);
    const kind = typeMeta ? stringField(readFields(typeMeta.data!), 2) ?? "" : "";
    const rawField = unknown.find((f) => f.field === 2 && f.data);
    if (!rawField) return body;
    const raw = rewriteRaw(kind, rawField.data!, to);
    if (raw === rawField.data) return body;
    return concatBytes([K8S_MAGIC, ...unknown.map((f) => (f === rawField ? bytesField(2, raw) : f.bytes))]);
  } catch {
    // Not a message we can read: relayed as it came.
    return body;
  }
}

/** One watch frame's payload (a raw WatchEvent) rewritten; the same bytes when nothing is ours. */
export function rewriteProtobufWatchEvent(event: Uint8Array, to: ServiceEndpoint): Uint8Array {
  try {
    const fields = readFields(event);
    const object = fields.find((f) => f.field === 2 && f.data);
    if (!object) return event;
    const ext = readFields(object.data!);
    const rawField = ext.find((f) => f.field === 1 && f.data);
    if (!rawField) return event;
    const raw = rewriteProtobufBody(rawField.data!, to);
    if (raw === rawField.data) return event;
    const newExt = concatBytes(ext.map((f) => (f === rawField ? bytesField(1, raw) : f.bytes)));
    return concatBytes(fields.map((f) => (f === object ? bytesField(2, newExt) : f.bytes)));
  } catch {
    return event;
  }
}
