/**
 * Reads metadata.name from a request body, JSON or Kubernetes protobuf (kubelet registers its Node
 * in protobuf). Protobuf: `k8s\0` + runtime.Unknown{raw = field 2}; the object's ObjectMeta is
 * field 1 and its name is field 1. No schemas needed.
 */
const MAGIC = [0x6b, 0x38, 0x73, 0x00];

function* fields(buf: Uint8Array): Generator<[field: number, wire: number, value: Uint8Array | bigint]> {
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    while (i < buf.length) {
      const b = buf[i++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new Error("truncated varint");
  };
  while (i < buf.length) {
    const tag = Number(varint());
    const field = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error("truncated field");
      yield [field, wire, buf.subarray(i, i + len)];
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function lengthDelimited(buf: Uint8Array, want: number): Uint8Array | undefined {
  for (const [f, w, v] of fields(buf)) if (f === want && w === 2) return v as Uint8Array;
  return undefined;
}

/** The runtime.Unknown's raw object bytes, if `buf` is a Kubernetes protobuf envelope. */
export function protobufRaw(buf: Uint8Array): Uint8Array | undefined {
  if (buf.length < 4 || MAGIC.some((b, i) => buf[i] !== b)) return undefined;
  return lengthDelimited(buf.subarray(4), 2);
}

export function objectName(contentType: string, body: Uint8Array): string | undefined {
  try {
    if (/protobuf/i.test(contentType)) {
      const raw = protobufRaw(body);
      const meta = raw && lengthDelimited(raw, 1);
      const name = meta && lengthDelimited(meta, 1);
      return name ? new TextDecoder().decode(name) : undefined;
    }
    const obj = JSON.parse(new TextDecoder().decode(body));
    const name = obj?.metadata?.name;
    return typeof name === "string" ? name : undefined;
  } catch {
    return undefined;
  }
}
