/**
 * The toleration rule of `lite-apiserver autonomy`, as pure functions over pod JSON.
 *
 * Facts it builds on (kube-apiserver ValidatePodUpdate / validateOnlyAddedTolerations, and the
 * taint manager in pkg/controller/tainteviction):
 * - an update may add tolerations and may change an existing one only in its `tolerationSeconds`
 *   (removing the field is such a change); it may never remove or reorder-away an existing one;
 * - for each NoExecute taint the taint manager uses the FIRST toleration that matches it, and
 *   evicts after the smallest `tolerationSeconds` among the used ones (none at all: never).
 * So "never evicted for being unreachable / not ready" means: for both taints, the first matching
 * toleration has no `tolerationSeconds`. Appending a second toleration is not enough.
 */

/** A pod toleration as JSON. */
export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

/** One JSON patch (RFC 6902) operation. */
export interface PatchOp {
  op: "add" | "remove" | "replace" | "test";
  path: string;
  value?: unknown;
}

export const UNREACHABLE = "node.kubernetes.io/unreachable";
export const NOT_READY = "node.kubernetes.io/not-ready";
/** The taints the node lifecycle controller puts on a node that stops reporting. */
export const NODE_TAINT_KEYS = [NOT_READY, UNREACHABLE] as const;
/** What DefaultTolerationSeconds gives every pod (and what a restore puts back when we added one). */
export const DEFAULT_TOLERATION_SECONDS = 300;
/**
 * Annotation recording what this controller changed: taint key → the seconds to restore.
 * Only pods carrying it are ever restored, so a pod that tolerates forever by its own spec is kept.
 */
export const ANNOTATION = "lite-apiserver.io/autonomy-toleration-seconds";

/** Whether a toleration matches a taint (corev1 Toleration.ToleratesTaint). */
export function toleratesTaint(
  t: Toleration,
  taint: { key: string; value?: string; effect: string },
): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  const op = t.operator || "Equal";
  if (op === "Exists") return true;
  if (op === "Equal") return (t.value ?? "") === (taint.value ?? "");
  return false;
}

/** Index of the toleration the taint manager uses for a NoExecute taint with this key, or -1. */
export function firstMatching(tolerations: Toleration[], key: string): number {
  return tolerations.findIndex((t) => toleratesTaint(t, { key, effect: "NoExecute" }));
}

type PodJson = {
  metadata?: { annotations?: Record<string, string>; deletionTimestamp?: string };
  spec?: { tolerations?: Toleration[]; nodeName?: string };
  status?: { phase?: string };
};

function tolerationsOf(pod: PodJson): Toleration[] {
  return Array.isArray(pod.spec?.tolerations) ? pod.spec!.tolerations! : [];
}

/** The recorded seconds per taint key, or undefined when the annotation is absent or unreadable. */
export function recorded(pod: PodJson): Record<string, number> | undefined {
  const raw = pod.metadata?.annotations?.[ANNOTATION];
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw);
    if (typeof v !== "object" || v === null || Array.isArray(v)) return {};
    const out: Record<string, number> = {};
    for (const [k, s] of Object.entries(v)) if (typeof s === "number" && s > 0) out[k] = s;
    return out;
  } catch {
    return {};
  }
}

/** Whether the taint manager would never evict this pod for the two node taints. */
export function isCovered(pod: PodJson): boolean {
  const tols = tolerationsOf(pod);
  return NODE_TAINT_KEYS.every((k) => {
    const i = firstMatching(tols, k);
    return i >= 0 && tols[i].tolerationSeconds === undefined;
  });
}

/** Pods that are finished or being deleted are left alone. */
export function isActive(pod: PodJson): boolean {
  const phase = pod.status?.phase;
  return !pod.metadata?.deletionTimestamp && phase !== "Succeeded" && phase !== "Failed";
}

function escapePointer(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

function annotationOps(pod: PodJson, value: Record<string, number> | undefined): PatchOp[] {
  const anns = pod.metadata?.annotations;
  const path = `/metadata/annotations/${escapePointer(ANNOTATION)}`;
  if (value === undefined) return anns && ANNOTATION in anns ? [{ op: "remove", path }] : [];
  const text = JSON.stringify(Object.fromEntries(Object.entries(value).sort()));
  if (!anns) return [{ op: "add", path: "/metadata/annotations", value: { [ANNOTATION]: text } }];
  return [{ op: "add", path, value: text }];
}

/**
 * The JSON patch that makes a pod tolerate both node taints forever, or null when it already does.
 * The first op tests the whole toleration list as it was read, so a concurrent change makes the
 * patch fail (422) instead of touching the wrong index.
 */
export function planCover(pod: PodJson): PatchOp[] | null {
  if (isCovered(pod)) return null;
  const tols = tolerationsOf(pod);
  const restore: Record<string, number> = { ...(recorded(pod) ?? {}) };
  const ops: PatchOp[] = [];
  const added: Toleration[] = [];
  for (const key of NODE_TAINT_KEYS) {
    const i = firstMatching(tols, key);
    if (i < 0) {
      added.push({ key, operator: "Exists", effect: "NoExecute" });
      restore[key] ??= DEFAULT_TOLERATION_SECONDS;
    } else if (tols[i].tolerationSeconds !== undefined) {
      // Both keys may share one toleration (a wildcard): remove its seconds once.
      if (!ops.some((o) => o.path === `/spec/tolerations/${i}/tolerationSeconds`)) {
        ops.push({ op: "remove", path: `/spec/tolerations/${i}/tolerationSeconds` });
      }
      restore[key] ??= tols[i].tolerationSeconds!;
    }
  }
  const out: PatchOp[] = [];
  if (pod.spec?.tolerations === undefined) {
    out.push({ op: "add", path: "/spec/tolerations", value: added });
  } else {
    out.push({ op: "test", path: "/spec/tolerations", value: tols }, ...ops);
    for (const t of added) out.push({ op: "add", path: "/spec/tolerations/-", value: t });
  }
  return [...out, ...annotationOps(pod, restore)];
}

/**
 * The JSON patch that puts back the seconds this controller removed (or the default 300 s on a
 * toleration it added), for a pod whose node no longer opts in; null when there is nothing to undo.
 */
export function planRestore(pod: PodJson): PatchOp[] | null {
  const restore = recorded(pod);
  if (restore === undefined) return null;
  const tols = tolerationsOf(pod);
  const ops: PatchOp[] = [];
  for (const key of NODE_TAINT_KEYS) {
    const seconds = restore[key];
    if (seconds === undefined) continue;
    const i = firstMatching(tols, key);
    if (i < 0 || tols[i].tolerationSeconds !== undefined) continue;
    const path = `/spec/tolerations/${i}/tolerationSeconds`;
    if (!ops.some((o) => o.path === path)) ops.push({ op: "add", path, value: seconds });
  }
  const test: PatchOp[] = ops.length ? [{ op: "test", path: "/spec/tolerations", value: tols }] : [];
  return [...test, ...ops, ...annotationOps(pod, undefined)];
}
