/**
 * The node lifecycle controller and taint manager, as far as eviction goes, with time scaled for
 * tests. `cut(node)` does what the node lifecycle controller does when a kubelet stops reporting
 * (Ready → Unknown, `node.kubernetes.io/unreachable` NoSchedule + NoExecute taints); `restore`
 * undoes it. The taint manager part reacts to any NoExecute taint, exactly by its rule
 * (pkg/controller/tainteviction): for each taint the FIRST matching toleration is used; a taint
 * with none evicts at once; otherwise eviction comes after the smallest tolerationSeconds among
 * the used ones, never when none has seconds; a pod or node update re-plans (an earlier pending
 * eviction is kept when it would fire sooner, as processPodOnNode does). Eviction = delete.
 */
import { findResource } from "./resources.ts";
import { meta, type Obj, type ObjectStore, type StoreEvent, timestamp } from "./store.ts";

const NODES = findResource("", "v1", "nodes")!;
const PODS = findResource("", "v1", "pods")!;
const UNREACHABLE = "node.kubernetes.io/unreachable";

type Taint = { key: string; value?: string; effect: string; timeAdded?: string };
type Toleration = {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
};

/** One eviction the taint manager carried out. */
export interface Eviction {
  namespace: string;
  name: string;
  node: string;
  /** ms since the taint manager first scheduled it. */
  afterMs: number;
  time: number;
}

function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  const op = t.operator || "Equal";
  if (op === "Exists") return true;
  return op === "Equal" && (t.value ?? "") === (taint.value ?? "");
}

/** Smallest tolerationSeconds of the used tolerations: -1 forever, 0 at once (getMinTolerationTime). */
function minTolerationSeconds(used: Toleration[]): number {
  if (used.length === 0) return 0;
  let min = Infinity;
  for (const t of used) {
    if (t.tolerationSeconds === undefined) continue;
    if (t.tolerationSeconds <= 0) return 0;
    min = Math.min(min, t.tolerationSeconds);
  }
  return min === Infinity ? -1 : min;
}

function noExecuteTaints(node: Obj | undefined): Taint[] {
  const taints = ((node?.spec as Obj | undefined)?.taints ?? []) as Taint[];
  return taints.filter((t) => t.effect === "NoExecute");
}

export class NodeLifecycle {
  readonly evictions: Eviction[] = [];
  #scheduled = new Map<string, { createdAt: number; fireAt: number; timer: ReturnType<typeof setTimeout> }>();
  #unsubscribe: () => void;
  /** Nodes that carry a NoExecute taint now. */
  #tainted = new Set<string>();

  /** `secondMs`: how long one tolerationSecond lasts here (1000 = real time). */
  constructor(readonly store: ObjectStore, readonly secondMs = 1000) {
    this.#unsubscribe = store.subscribe((e) => this.#onEvent(e));
  }

  /** The node stops reporting: Ready Unknown, unreachable taints (NoSchedule and NoExecute). */
  cut(name: string): void {
    const node = this.store.get(NODES, undefined, name);
    if (!node) throw new Error(`node lifecycle: no node ${name}`);
    const now = timestamp();
    const spec = (node.spec ??= {}) as Obj;
    const taints = ((spec.taints ?? []) as Taint[]).filter((t) => t.key !== UNREACHABLE);
    spec.taints = [
      ...taints,
      { key: UNREACHABLE, effect: "NoSchedule", timeAdded: now },
      { key: UNREACHABLE, effect: "NoExecute", timeAdded: now },
    ];
    this.#setReady(node, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", now);
    delete meta(node).resourceVersion;
    this.store.update(NODES, node);
  }

  /** The node reports again: Ready True, the unreachable taints gone. */
  restore(name: string): void {
    const node = this.store.get(NODES, undefined, name);
    if (!node) throw new Error(`node lifecycle: no node ${name}`);
    const spec = (node.spec ??= {}) as Obj;
    const taints = ((spec.taints ?? []) as Taint[]).filter((t) => t.key !== UNREACHABLE);
    if (taints.length) spec.taints = taints;
    else delete spec.taints;
    this.#setReady(node, "True", "KubeletReady", "kubelet is posting ready status", timestamp());
    delete meta(node).resourceVersion;
    this.store.update(NODES, node);
  }

  #setReady(node: Obj, status: string, reason: string, message: string, now: string): void {
    const st = (node.status ??= {}) as Obj;
    const conds = ((st.conditions ?? []) as Obj[]).filter((c) => c.type !== "Ready");
    st.conditions = [...conds, {
      type: "Ready",
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    }];
  }

  #onEvent(e: StoreEvent): void {
    if (e.def === NODES) {
      const name = String(meta(e.obj).name);
      if (e.type === "DELETED" || noExecuteTaints(e.obj).length === 0) this.#tainted.delete(name);
      else this.#tainted.add(name);
      if (e.type === "DELETED") return;
      const before = JSON.stringify(noExecuteTaints(e.old));
      if (e.type === "MODIFIED" && before === JSON.stringify(noExecuteTaints(e.obj))) return;
      // Deferred: the store is mid-emit; evictions are writes of their own.
      queueMicrotask(() => {
        for (const p of this.store.list(PODS)) {
          if ((p.spec as Obj | undefined)?.nodeName === name) this.#plan(p, e.obj);
        }
      });
    } else if (e.def === PODS) {
      const key = `${meta(e.obj).namespace}/${meta(e.obj).name}`;
      if (e.type === "DELETED") return this.#cancel(key);
      const nodeName = (e.obj.spec as Obj | undefined)?.nodeName;
      if (!nodeName) return;
      // Most pods are on untainted nodes: nothing to plan (and no copies made) for them.
      if (!this.#tainted.has(String(nodeName))) return this.#cancel(key);
      queueMicrotask(() => {
        const pod = this.store.get(PODS, String(meta(e.obj).namespace), String(meta(e.obj).name));
        if (pod) this.#plan(pod, this.store.get(NODES, undefined, String(nodeName)));
      });
    }
  }

  #cancel(key: string): void {
    const s = this.#scheduled.get(key);
    if (s) clearTimeout(s.timer);
    this.#scheduled.delete(key);
  }

  /** processPodOnNode. */
  #plan(pod: Obj, node: Obj | undefined): void {
    const ns = String(meta(pod).namespace);
    const name = String(meta(pod).name);
    const key = `${ns}/${name}`;
    const taints = noExecuteTaints(node);
    if (taints.length === 0) return this.#cancel(key);
    const tols = ((pod.spec as Obj | undefined)?.tolerations ?? []) as Toleration[];
    const used: Toleration[] = [];
    for (const taint of taints) {
      const t = tols.find((t) => tolerates(t, taint));
      if (!t) {
        used.length = 0;
        break;
      }
      used.push(t);
    }
    const seconds = minTolerationSeconds(used);
    if (seconds < 0) return this.#cancel(key);
    const now = Date.now();
    const delay = seconds * this.secondMs;
    let createdAt = now;
    const prev = this.#scheduled.get(key);
    if (prev) {
      createdAt = prev.createdAt;
      if (createdAt + delay < now + delay) return; // the pending eviction stays (it fires sooner)
      this.#cancel(key);
    }
    const nodeName = String(meta(node!).name);
    const timer = setTimeout(() => {
      this.#scheduled.delete(key);
      if (!this.store.get(PODS, ns, name)) return;
      this.store.delete(PODS, ns, name);
      this.evictions.push({
        namespace: ns,
        name,
        node: nodeName,
        afterMs: Date.now() - createdAt,
        time: Date.now(),
      });
    }, delay);
    this.#scheduled.set(key, { createdAt, fireAt: now + delay, timer });
  }

  stop(): void {
    this.#unsubscribe();
    for (const k of [...this.#scheduled.keys()]) this.#cancel(k);
  }
}
