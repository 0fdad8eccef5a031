/**
 * The protobuf wire format, as much as schema-less edits of Kubernetes objects need: read a
 * message's fields (keeping each field's exact bytes, so untouched fields are copied verbatim),
 * and write varint and length-delimited fields. Kubernetes' envelope: `k8s\0` + runtime.Unknown
 * {typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3, contentType = 4}.
 */

/** One field of a message. */
export interface WireField {
  field: number;
  /** 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
  wire: number;
  /** The field's whole encoding (tag included). */
  bytes: Uint8Array;
  /** Length-delimited payload, or undefined. */
  data?: Uint8Array;
  /** Varint value, or undefined. */
  value?: bigint;
}

export const K8S_MAGIC = new Uint8Array([0x6b, 0x38, 0x73, 0x00]);

/** Reads every field of a message; throws on malformed input. */
export function readFields(buf: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    while (i < buf.length) {
      const b = buf[i++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error("varint too long");
    }
    throw new Error("truncated varint");
  };
  while (i < buf.length) {
    const start = i;
    const tag = Number(varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 0) throw new Error("field number 0");
    let data: Uint8Array | undefined;
    let value: bigint | undefined;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error("truncated field");
      data = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (i > buf.length) throw new Error("truncated field");
    out.push({ field, wire, bytes: buf.subarray(start, i), data, value });
  }
  return out;
}

function varintBytes(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

/** A varint field (int32/int64/bool/enum). */
export function varintField(field: number, value: number | bigint | boolean): Uint8Array {
  const v = typeof value === "boolean" ? (value ? 1n : 0n) : BigInt(value);
  return new Uint8Array([...varintBytes(BigInt(field << 3)), ...varintBytes(v)]);
}

const enc = new TextEncoder();

/** A length-delimited field (bytes, string, or an embedded message). */
export function bytesField(field: number, data: Uint8Array | string): Uint8Array {
  const d = typeof data === "string" ? enc.encode(data) : data;
  return concatBytes([
    new Uint8Array([...varintBytes(BigInt((field << 3) | 2)), ...varintBytes(BigInt(d.length))]),
    d,
  ]);
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.byteLength;
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

const dec = new TextDecoder();

/** The first length-delimited field `n` as a string, or undefined. */
export function stringField(fields: WireField[], n: number): string | undefined {
  const f = fields.find((x) => x.field === n && x.data);
  return f ? dec.decode(f.data) : undefined;
}

/** True when `buf` starts with Kubernetes' protobuf magic. */
export function hasK8sMagic(buf: Uint8Array): boolean {
  return buf.length >= 4 && K8S_MAGIC.every((b, i) => buf[i] === b);
}
