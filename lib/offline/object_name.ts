/**
 * Reads metadata.name from a request body, JSON or Kubernetes protobuf (kubelet registers its Node
 * in protobuf). Protobuf: `k8s\0` + runtime.Unknown{raw = field 2}; the object's ObjectMeta is
 * field 1 and its name is field 1. No schemas needed.
 */
import { hasK8sMagic, readFields } from "../protobuf/wire.ts";

function lengthDelimited(buf: Uint8Array, want: number): Uint8Array | undefined {
  return readFields(buf).find((f) => f.field === want && f.data)?.data;
}

/** The runtime.Unknown's raw object bytes, if `buf` is a Kubernetes protobuf envelope. */
export function protobufRaw(buf: Uint8Array): Uint8Array | undefined {
  if (!hasK8sMagic(buf)) return undefined;
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
