/**
 * Lists are stored as an envelope (kind, apiVersion, metadata) plus one record per item, so a
 * watch event is one item write; a list is assembled only when served, without re-parsing items.
 */
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface SplitList {
  envelope: string;
  resourceVersion: string;
  continueToken: string;
  items: Array<[itemKey: string, body: Uint8Array]>;
}

type Obj = Record<string, unknown>;

export function metaOf(obj: unknown): Obj {
  const m = (obj as Obj | null)?.metadata;
  return m && typeof m === "object" ? m as Obj : {};
}

/** `namespace/name` (namespace empty for cluster-scoped objects). */
export function itemKeyOf(obj: unknown): string {
  const m = metaOf(obj);
  return `${m.namespace ?? ""}/${m.name ?? ""}`;
}

/** Parses a JSON list response; undefined if it is not a list. */
export function splitList(body: Uint8Array | string): SplitList | undefined {
  let doc: Obj;
  try {
    doc = JSON.parse(typeof body === "string" ? body : dec.decode(body));
  } catch {
    return undefined;
  }
  if (!doc || typeof doc !== "object" || !Array.isArray(doc.items)) return undefined;
  const items = (doc.items as unknown[]).map((
    it,
  ): [string, Uint8Array] => [itemKeyOf(it), enc.encode(JSON.stringify(it))]);
  items.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const meta = metaOf(doc);
  const { items: _drop, ...envelope } = doc;
  return {
    envelope: JSON.stringify(envelope),
    resourceVersion: String(meta.resourceVersion ?? ""),
    continueToken: String(meta.continue ?? ""),
    items,
  };
}

/**
 * Builds the list body: the envelope with metadata overrides, then the stored item bytes as they are.
 */
export function assembleList(
  envelope: string,
  items: Uint8Array[],
  metadata: { resourceVersion?: string; continue?: string; remainingItemCount?: number },
): Uint8Array {
  const env = JSON.parse(envelope) as Obj;
  const meta: Obj = { ...metaOf(env) };
  delete meta.continue;
  delete meta.remainingItemCount;
  if (metadata.resourceVersion !== undefined) meta.resourceVersion = metadata.resourceVersion;
  if (metadata.continue) meta.continue = metadata.continue;
  if (metadata.remainingItemCount !== undefined) meta.remainingItemCount = metadata.remainingItemCount;
  env.metadata = meta;
  const head = enc.encode(JSON.stringify(env).replace(/}$/, ',"items":['));
  let size = head.byteLength + 2 + Math.max(0, items.length - 1);
  for (const it of items) size += it.byteLength;
  const out = new Uint8Array(size);
  out.set(head, 0);
  let off = head.byteLength;
  items.forEach((it, i) => {
    if (i > 0) out[off++] = 0x2c; // ,
    out.set(it, off);
    off += it.byteLength;
  });
  out[off++] = 0x5d; // ]
  out[off++] = 0x7d; // }
  return out;
}

/** The kind of one item of a list envelope: `PodList` → `Pod`. */
export function itemKind(envelope: string): { kind: string; apiVersion: string } {
  const env = JSON.parse(envelope) as Obj;
  return { kind: String(env.kind ?? "").replace(/List$/, ""), apiVersion: String(env.apiVersion ?? "") };
}

export function parseJson(body: Uint8Array): unknown {
  return JSON.parse(dec.decode(body));
}
