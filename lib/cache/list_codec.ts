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

/**
 * Splits a JSON list response without building the whole list as objects: the `items` array is
 * located by scanning the bytes, each item is sliced out as it was sent and parsed alone (for its
 * key). Memory stays near the size of the body, not a multiple of it. undefined if not a list.
 */
export function splitList(body: Uint8Array | string): SplitList | undefined {
  const bytes = typeof body === "string" ? enc.encode(body) : body;
  const bounds = scanItems(bytes);
  if (!bounds) return undefined;
  let doc: Obj;
  try {
    doc = JSON.parse(
      dec.decode(bytes.subarray(0, bounds.open + 1)) + dec.decode(bytes.subarray(bounds.close)),
    );
  } catch {
    return undefined;
  }
  if (!doc || typeof doc !== "object" || !Array.isArray(doc.items)) return undefined;
  const items: Array<[string, Uint8Array]> = [];
  for (const [from, to] of bounds.items) {
    const raw = bytes.slice(from, to);
    let item: unknown;
    try {
      item = JSON.parse(dec.decode(raw));
    } catch {
      return undefined;
    }
    // An item without a name would be stored under a key it shares with others: not cached.
    const name = metaOf(item).name;
    if (typeof name !== "string" || name === "") return undefined;
    items.push([itemKeyOf(item), raw]);
  }
  items.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < items.length; i++) if (items[i][0] === items[i - 1][0]) return undefined;
  const meta = metaOf(doc);
  const { items: _drop, ...envelope } = doc;
  return {
    envelope: JSON.stringify(envelope),
    resourceVersion: String(meta.resourceVersion ?? ""),
    continueToken: String(meta.continue ?? ""),
    items,
  };
}

const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  COLON = 0x3a;
const ITEMS_KEY = enc.encode('"items"');

const COMMA = 0x2c;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Finds the top-level `"items": [ ... ]` of a JSON object: the offsets of its brackets and of each
 * element. undefined if there is none, the JSON is not well nested, or the array holds anything
 * but objects separated by single commas (a list with such items is not cached: none may vanish).
 */
export function scanItems(
  b: Uint8Array,
): { open: number; close: number; items: Array<[number, number]> } | undefined {
  let depth = 0;
  let inString = false;
  let stringStart = -1;
  let lastKeyIsItems = false;
  let open = -1;
  let itemStart = -1;
  /** Between items of the array: what may come next. */
  let expect: "item-or-end" | "comma-or-end" | "item" = "item-or-end";
  const items: Array<[number, number]> = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) {
        inString = false;
        if (depth === 1 && open < 0) {
          lastKeyIsItems = i - stringStart + 1 === ITEMS_KEY.length &&
            ITEMS_KEY.every((x, j) => b[stringStart + j] === x);
        }
      }
      continue;
    }
    if (open >= 0 && depth === 2 && itemStart < 0 && !isSpace(c)) {
      // Directly inside the items array.
      if (c === COMMA && expect === "comma-or-end") {
        expect = "item";
        continue;
      }
      if (!(c === LBRACE && expect !== "comma-or-end") && !(c === RBRACKET && expect !== "item")) {
        return undefined;
      }
    }
    if (c === QUOTE) {
      inString = true;
      stringStart = i;
    } else if (c === LBRACE || c === LBRACKET) {
      if (depth === 1 && c === LBRACKET && lastKeyIsItems && open < 0) open = i;
      else if (depth === 2 && open >= 0 && itemStart < 0 && c === LBRACE) itemStart = i;
      depth++;
    } else if (c === RBRACE || c === RBRACKET) {
      depth--;
      if (depth < 0) return undefined;
      if (depth === 2 && itemStart >= 0 && c === RBRACE) {
        items.push([itemStart, i + 1]);
        itemStart = -1;
        expect = "comma-or-end";
      } else if (depth === 1 && open >= 0 && c === RBRACKET) {
        return { open, close: i, items };
      }
    } else if (c !== COLON && depth === 1 && c > 0x20 && c !== COMMA) {
      lastKeyIsItems = false;
    }
  }
  return undefined;
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
