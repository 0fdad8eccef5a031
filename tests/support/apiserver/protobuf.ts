/**
 * Decodes the subset of Kubernetes protobuf request bodies kubectl and client-go send for built-in
 * types (`k8s\0` + runtime.Unknown envelope). Schema-driven: fields not listed are skipped.
 * Field numbers are from k8s.io/api generated.proto and apimachinery meta/v1 generated.proto.
 */
import { badRequest } from "./status.ts";

type Obj = Record<string, unknown>;
type Kind = "string" | "bytes" | "int" | "bool" | "time" | "quantity" | "intorstring" | Schema;
interface Field {
  name: string;
  kind: Kind;
  repeated?: boolean;
  /** A map<string, value>: repeated entries {1: key, 2: value}. */
  map?: boolean;
}
type Schema = { [n: number]: Field };

const f = (name: string, kind: Kind, opts: Partial<Field> = {}): Field => ({ name, kind, ...opts });

const OwnerReference: Schema = {
  1: f("kind", "string"),
  3: f("name", "string"),
  4: f("uid", "string"),
  5: f("apiVersion", "string"),
  6: f("controller", "bool"),
  7: f("blockOwnerDeletion", "bool"),
};
const ObjectMeta: Schema = {
  1: f("name", "string"),
  2: f("generateName", "string"),
  3: f("namespace", "string"),
  5: f("uid", "string"),
  6: f("resourceVersion", "string"),
  7: f("generation", "int"),
  8: f("creationTimestamp", "time"),
  9: f("deletionTimestamp", "time"),
  10: f("deletionGracePeriodSeconds", "int"),
  11: f("labels", "string", { map: true }),
  12: f("annotations", "string", { map: true }),
  13: f("ownerReferences", OwnerReference, { repeated: true }),
  14: f("finalizers", "string", { repeated: true }),
};
const LabelSelector: Schema = {
  1: f("matchLabels", "string", { map: true }),
  2: f("matchExpressions", {
    1: f("key", "string"),
    2: f("operator", "string"),
    3: f("values", "string", { repeated: true }),
  }, { repeated: true }),
};
const ResourceRequirements: Schema = {
  1: f("limits", "quantity", { map: true }),
  2: f("requests", "quantity", { map: true }),
};
const Container: Schema = {
  1: f("name", "string"),
  2: f("image", "string"),
  3: f("command", "string", { repeated: true }),
  4: f("args", "string", { repeated: true }),
  5: f("workingDir", "string"),
  6: f("ports", {
    1: f("name", "string"),
    2: f("hostPort", "int"),
    3: f("containerPort", "int"),
    4: f("protocol", "string"),
    5: f("hostIP", "string"),
  }, { repeated: true }),
  7: f("env", { 1: f("name", "string"), 2: f("value", "string") }, { repeated: true }),
  8: f("resources", ResourceRequirements),
  13: f("terminationMessagePath", "string"),
  14: f("imagePullPolicy", "string"),
  16: f("stdin", "bool"),
  18: f("tty", "bool"),
};
const PodSpec: Schema = {
  2: f("containers", Container, { repeated: true }),
  3: f("restartPolicy", "string"),
  4: f("terminationGracePeriodSeconds", "int"),
  6: f("dnsPolicy", "string"),
  7: f("nodeSelector", "string", { map: true }),
  8: f("serviceAccountName", "string"),
  10: f("nodeName", "string"),
  11: f("hostNetwork", "bool"),
  20: f("initContainers", Container, { repeated: true }),
};
const PodTemplateSpec: Schema = { 1: f("metadata", ObjectMeta), 2: f("spec", PodSpec) };

const TYPES: Record<string, Schema> = {
  ConfigMap: {
    1: f("metadata", ObjectMeta),
    2: f("data", "string", { map: true }),
    3: f("binaryData", "bytes", { map: true }),
    4: f("immutable", "bool"),
  },
  Secret: {
    1: f("metadata", ObjectMeta),
    2: f("data", "bytes", { map: true }),
    3: f("type", "string"),
    4: f("stringData", "string", { map: true }),
    5: f("immutable", "bool"),
  },
  Namespace: {
    1: f("metadata", ObjectMeta),
    2: f("spec", { 1: f("finalizers", "string", { repeated: true }) }),
  },
  ServiceAccount: {
    1: f("metadata", ObjectMeta),
    4: f("automountServiceAccountToken", "bool"),
  },
  Pod: {
    1: f("metadata", ObjectMeta),
    2: f("spec", PodSpec),
    3: f("status", { 1: f("phase", "string"), 5: f("hostIP", "string"), 6: f("podIP", "string") }),
  },
  Deployment: {
    1: f("metadata", ObjectMeta),
    2: f("spec", {
      1: f("replicas", "int"),
      2: f("selector", LabelSelector),
      3: f("template", PodTemplateSpec),
      4: f("strategy", {
        1: f("type", "string"),
        2: f("rollingUpdate", { 1: f("maxUnavailable", "intorstring"), 2: f("maxSurge", "intorstring") }),
      }),
      5: f("minReadySeconds", "int"),
      6: f("revisionHistoryLimit", "int"),
      7: f("paused", "bool"),
      9: f("progressDeadlineSeconds", "int"),
    }),
  },
  Lease: {
    1: f("metadata", ObjectMeta),
    2: f("spec", {
      1: f("holderIdentity", "string"),
      2: f("leaseDurationSeconds", "int"),
      3: f("acquireTime", "time"),
      4: f("renewTime", "time"),
      5: f("leaseTransitions", "int"),
    }),
  },
  TokenRequest: {
    1: f("metadata", ObjectMeta),
    2: f("spec", {
      1: f("audiences", "string", { repeated: true }),
      3: f("boundObjectRef", {
        1: f("kind", "string"),
        2: f("apiVersion", "string"),
        3: f("name", "string"),
        4: f("uid", "string"),
      }),
      4: f("expirationSeconds", "int"),
    }),
  },
  Scale: { 1: f("metadata", ObjectMeta), 2: f("spec", { 1: f("replicas", "int") }) },
};
TYPES.Node = { 1: f("metadata", ObjectMeta) };
TYPES.Event = { 1: f("metadata", ObjectMeta) };

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  varint(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= this.buf.length) throw badRequest("protobuf: truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (!(b & 0x80)) return result;
      mul *= 128;
    }
  }
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.buf.length) throw badRequest("protobuf: truncated field");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw badRequest(`protobuf: unsupported wire type ${wire}`);
  }
}

const dec = new TextDecoder();

function b64(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

function toInt64(n: number): number {
  // Negative int64 values arrive as 10-byte varints ≥ 2^63.
  return n >= 2 ** 63 ? n - 2 ** 64 : n;
}

/** Decodes one message body with a schema. */
function message(buf: Uint8Array, schema: Schema): Obj {
  const r = new Reader(buf);
  const out: Obj = {};
  while (r.pos < buf.length) {
    const tag = r.varint();
    const field = schema[Math.floor(tag / 8)];
    const wire = tag & 7;
    if (!field) {
      r.skip(wire);
      continue;
    }
    if (field.map) {
      const entry = r.bytes();
      const er = new Reader(entry);
      let k = "";
      let v: unknown = "";
      while (er.pos < entry.length) {
        const t = er.varint();
        if (t >> 3 === 1) k = dec.decode(er.bytes());
        else if (t >> 3 === 2) v = scalar(er, field.kind, t & 7);
        else er.skip(t & 7);
      }
      const m = (out[field.name] ??= {}) as Obj;
      m[k] = v;
      continue;
    }
    const v = scalar(r, field.kind, wire);
    // Zero values of omitempty JSON fields: gogo protobuf writes them, JSON leaves them out.
    if (v === undefined || (v === "" && !field.repeated)) continue;
    if (field.repeated) ((out[field.name] ??= []) as unknown[]).push(v);
    else out[field.name] = v;
  }
  return out;
}

function scalar(r: Reader, kind: Kind, wire: number): unknown {
  if (kind === "int") return toInt64(r.varint());
  if (kind === "bool") return r.varint() !== 0;
  if (wire !== 2) {
    r.skip(wire);
    return undefined;
  }
  const b = r.bytes();
  if (kind === "string") return dec.decode(b);
  if (kind === "bytes") return b64(b);
  if (kind === "time") {
    const t = message(b, { 1: f("seconds", "int"), 2: f("nanos", "int") });
    if (!t.seconds && !t.nanos) return undefined;
    const base = new Date(Number(t.seconds ?? 0) * 1000).toISOString().replace(/\.\d+Z$/, "");
    if (!t.nanos) return `${base}Z`;
    return `${base}.${String(Math.floor(Number(t.nanos) / 1000)).padStart(6, "0")}Z`;
  }
  if (kind === "quantity") return message(b, { 1: f("string", "string") }).string ?? "0";
  if (kind === "intorstring") {
    const v = message(b, { 1: f("type", "int"), 2: f("intVal", "int"), 3: f("strVal", "string") });
    return v.type === 1 ? v.strVal ?? "" : v.intVal ?? 0;
  }
  return message(b, kind);
}

/** True when the body starts with the `k8s\0` protobuf envelope magic. */
export function isProtobufEnvelope(body: Uint8Array): boolean {
  return body.length >= 4 && body[0] === 0x6b && body[1] === 0x38 && body[2] === 0x73 && body[3] === 0;
}

/**
 * Decodes a protobuf request body into the JSON object it stands for. Unknown kinds keep their
 * metadata only. Throws a 400 ApiError on malformed input.
 */
export function decodeProtobuf(body: Uint8Array): Obj {
  if (!isProtobufEnvelope(body)) throw badRequest("protobuf: missing k8s envelope");
  const unknown = message(body.subarray(4), {
    1: f("typeMeta", { 1: f("apiVersion", "string"), 2: f("kind", "string") }),
    2: f("raw", "bytes"),
    4: f("contentType", "string"),
  });
  const tm = (unknown.typeMeta ?? {}) as Obj;
  const kind = String(tm.kind ?? "");
  const raw = Uint8Array.from(atob(String(unknown.raw ?? "")), (c) => c.charCodeAt(0));
  const obj = message(raw, TYPES[kind] ?? { 1: f("metadata", ObjectMeta) });
  return { kind, apiVersion: tm.apiVersion, ...obj };
}
