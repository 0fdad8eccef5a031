/**
 * In-memory object store with one global resourceVersion counter and a replayable event history.
 */
import { type ResourceDef } from "./resources.ts";
import { alreadyExists, conflict, notFound, tooOld } from "./status.ts";

/** A JSON object. */
export type Obj = Record<string, unknown>;

/** A change, as watchers see it. */
export interface StoreEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  rv: number;
  def: ResourceDef;
  obj: Obj;
  /** The previous state, for MODIFIED (to tell selector transitions). */
  old?: Obj;
}

/** The metadata of an object. */
export function meta(obj: Obj): Obj {
  if (!obj.metadata || typeof obj.metadata !== "object") obj.metadata = {};
  return obj.metadata as Obj;
}

function key(ns: string | undefined, name: string): string {
  return `${ns ?? ""}/${name}`;
}

/** A Kubernetes-style timestamp: RFC 3339, seconds precision. */
export function timestamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

function specPart(obj: Obj): string {
  const { metadata: _m, status: _s, ...rest } = obj;
  return JSON.stringify(rest);
}

const HISTORY_LIMIT = 20_000;

/** The store. Objects handed out are copies. */
export class ObjectStore {
  rv = 1;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  oldestRv = 1;
  private objects = new Map<ResourceDef, Map<string, Obj>>();
  private history: StoreEvent[] = [];
  private listeners = new Set<(e: StoreEvent) => void>();

  private bucket(def: ResourceDef): Map<string, Obj> {
    let b = this.objects.get(def);
    if (!b) this.objects.set(def, b = new Map());
    return b;
  }

  /** One object, or undefined. */
  get(def: ResourceDef, ns: string | undefined, name: string): Obj | undefined {
    const o = this.bucket(def).get(key(def.namespaced ? ns : undefined, name));
    return o ? structuredClone(o) : undefined;
  }

  /** Objects of a resource (in one namespace if given), sorted by namespace/name. */
  list(def: ResourceDef, ns?: string): Obj[] {
    const out: Obj[] = [];
    const keys = [...this.bucket(def).keys()].sort();
    for (const k of keys) {
      const o = this.bucket(def).get(k)!;
      if (ns && def.namespaced && meta(o).namespace !== ns) continue;
      out.push(structuredClone(o));
    }
    return out;
  }

  private emit(e: StoreEvent): void {
    this.history.push(e);
    if (this.history.length > HISTORY_LIMIT) {
      const dropped = this.history.splice(0, this.history.length - HISTORY_LIMIT);
      this.oldestRv = dropped[dropped.length - 1].rv;
    }
    for (const l of [...this.listeners]) l(e);
  }

  /** Stores a new object; assigns uid, resourceVersion, creationTimestamp, generation. */
  create(def: ResourceDef, input: Obj): Obj {
    const obj = structuredClone(input);
    const m = meta(obj);
    const ns = def.namespaced ? String(m.namespace ?? "default") : undefined;
    const name = String(m.name);
    const k = key(ns, name);
    if (this.bucket(def).has(k)) throw alreadyExists(def, name);
    if (ns !== undefined) m.namespace = ns;
    else delete m.namespace;
    m.uid = crypto.randomUUID();
    m.resourceVersion = String(++this.rv);
    m.generation = 1;
    m.creationTimestamp = timestamp();
    delete m.deletionTimestamp;
    this.bucket(def).set(k, obj);
    const out = structuredClone(obj);
    this.emit({ type: "ADDED", rv: this.rv, def, obj: structuredClone(obj) });
    return out;
  }

  /**
   * Replaces an object. A non-empty metadata.resourceVersion that differs from the stored one is a
   * 409 Conflict. uid and creationTimestamp are kept; generation grows when anything but
   * metadata and status changed.
   */
  update(def: ResourceDef, input: Obj): Obj {
    const obj = structuredClone(input);
    const m = meta(obj);
    const ns = def.namespaced ? String(m.namespace ?? "default") : undefined;
    const name = String(m.name);
    const k = key(ns, name);
    const old = this.bucket(def).get(k);
    if (!old) throw notFound(def, name);
    const om = meta(old);
    if (
      m.resourceVersion !== undefined && m.resourceVersion !== "" && m.resourceVersion !== om.resourceVersion
    ) {
      throw conflict(def, name);
    }
    if (ns !== undefined) m.namespace = ns;
    else delete m.namespace;
    m.uid = om.uid;
    m.creationTimestamp = om.creationTimestamp;
    m.generation = (om.generation as number ?? 1) + (specPart(old) === specPart(obj) ? 0 : 1);
    m.resourceVersion = String(++this.rv);
    this.bucket(def).set(k, obj);
    const out = structuredClone(obj);
    this.emit({ type: "MODIFIED", rv: this.rv, def, obj: structuredClone(obj), old: structuredClone(old) });
    return out;
  }

  /** Deletes an object; returns its last state (with the deletion's resourceVersion). */
  delete(def: ResourceDef, ns: string | undefined, name: string): Obj {
    const k = key(def.namespaced ? ns : undefined, name);
    const old = this.bucket(def).get(k);
    if (!old) throw notFound(def, name);
    this.bucket(def).delete(k);
    meta(old).resourceVersion = String(++this.rv);
    this.emit({ type: "DELETED", rv: this.rv, def, obj: structuredClone(old) });
    return structuredClone(old);
  }

  /** Events after resourceVersion `from` for one resource; 410 if history no longer reaches back. */
  since(def: ResourceDef, from: number): StoreEvent[] {
    if (from < this.oldestRv) throw tooOld(from, this.oldestRv);
    return this.history.filter((e) => e.rv > from && e.def === def);
  }

  /** Calls fn for every future change; returns the unsubscribe function. */
  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Forgets the history: older resourceVersions now give 410 Gone. */
  compact(): void {
    this.history = [];
    this.oldestRv = this.rv;
  }
}
