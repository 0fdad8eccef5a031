/**
 * Kubernetes protobuf fixtures for tests: the real serializer output in tests/testdata/k8s, renamed to
 * be the `kubernetes` Service's Endpoints or EndpointSlice, and the envelope taken apart.
 */
import { bytesField, concatBytes, K8S_MAGIC, readFields, type WireField } from "../../lib/protobuf/wire.ts";

const DATA = new URL("../testdata/k8s/", import.meta.url);

/** Replaces fields `n` of a message (all of them) with `values`, in place of the first. */
function replace(fields: WireField[], n: number, values: Uint8Array[]): Uint8Array {
  const out: Uint8Array[] = [];
  let placed = false;
  for (const f of fields) {
    if (f.field !== n) out.push(f.bytes);
    else if (!placed) {
      out.push(...values);
      placed = true;
    }
  }
  if (!placed) out.push(...values);
  return concatBytes(out);
}

/** Unknown's raw object and a function to put a new raw back in the same envelope. */
export function envelope(body: Uint8Array) {
  const unknown = readFields(body.subarray(4));
  const raw = unknown.find((f) => f.field === 2)!.data!;
  return { raw, wrap: (r: Uint8Array) => concatBytes([K8S_MAGIC, replace(unknown, 2, [bytesField(2, r)])]) };
}

/** The real object renamed default/kubernetes, labelled kubernetes.io/service-name=kubernetes. */
export async function ours(type: string, addressType?: string): Promise<Uint8Array> {
  const { raw, wrap } = envelope(await Deno.readFile(new URL(`${type}.pb`, DATA)));
  const fields = readFields(raw);
  const meta = readFields(fields.find((f) => f.field === 1)!.data!);
  let m = replace(meta, 1, [bytesField(1, "kubernetes")]);
  m = replace(readFields(m), 3, [bytesField(3, "default")]);
  const label = bytesField(
    11,
    concatBytes([bytesField(1, "kubernetes.io/service-name"), bytesField(2, "kubernetes")]),
  );
  m = concatBytes([m, label]);
  let obj = replace(fields, 1, [bytesField(1, m)]);
  if (addressType) obj = replace(readFields(obj), 4, [bytesField(4, addressType)]);
  return wrap(obj);
}

/** A raw WatchEvent {type, object {raw}} as the apiserver frames protobuf watches. */
export function watchEvent(type: string, enveloped: Uint8Array): Uint8Array {
  return concatBytes([bytesField(1, type), bytesField(2, bytesField(1, enveloped))]);
}

/** One length-delimited frame (4-byte big-endian length + payload). */
export function frame(payload: Uint8Array): Uint8Array {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, payload.byteLength);
  return concatBytes([head, payload]);
}
