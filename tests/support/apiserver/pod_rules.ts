/**
 * What the real kube-apiserver does to pods that the autonomy controller depends on:
 * - the DefaultTolerationSeconds admission plugin on create: a `node.kubernetes.io/not-ready` and a
 *   `node.kubernetes.io/unreachable` NoExecute toleration of 300 s, unless one already matches
 *   (a toleration whose key is that key or empty and whose effect is NoExecute or empty);
 * - ValidatePodUpdate's toleration rule: every existing toleration must still be there, changed at
 *   most in `tolerationSeconds` (validateOnlyAddedTolerations), new ones may be added, and the
 *   list must be valid (ValidateTolerations); other spec fields are immutable except container
 *   images, activeDeadlineSeconds and terminationGracePeriodSeconds.
 */
import { invalid } from "./status.ts";
import { meta, type Obj } from "./store.ts";

type Toleration = {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
};

const DEFAULT_SECONDS = 300;

/** DefaultTolerationSeconds: adds the two default tolerations to a pod being created. */
export function addDefaultTolerations(pod: Obj): void {
  const spec = (pod.spec ??= {}) as Obj;
  const tols = (Array.isArray(spec.tolerations) ? spec.tolerations : []) as Toleration[];
  const tolerates = (key: string) =>
    tols.some((t) => (t.key === key || !t.key) && (t.effect === "NoExecute" || !t.effect));
  const add: Toleration[] = [];
  for (const key of ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]) {
    if (!tolerates(key)) {
      add.push({ key, operator: "Exists", effect: "NoExecute", tolerationSeconds: DEFAULT_SECONDS });
    }
  }
  if (add.length) spec.tolerations = [...tols, ...add];
}

/** The toleration as the validation compares it: every field but tolerationSeconds, defaults empty. */
function shape(t: Toleration): string {
  return JSON.stringify([t.key ?? "", t.operator ?? "", t.value ?? "", t.effect ?? ""]);
}

/** ValidateTolerations: the checks a toleration list must pass. */
function validateTolerations(kind: string, name: string, tols: Toleration[]): void {
  tols.forEach((t, i) => {
    const path = `spec.tolerations[${i}]`;
    const op = t.operator ?? "";
    if (!t.key && op !== "Exists") {
      throw invalid(
        kind,
        name,
        `${path}.operator`,
        "Invalid value",
        `operator must be Exists when \`key\` is empty, which means "match all values and all keys"`,
      );
    }
    if (t.tolerationSeconds !== undefined && t.effect !== "NoExecute") {
      throw invalid(
        kind,
        name,
        `${path}.effect`,
        "Invalid value",
        "effect must be 'NoExecute' when `tolerationSeconds` is set",
      );
    }
    if (op === "Exists" && t.value) {
      throw invalid(
        kind,
        name,
        `${path}.operator`,
        "Invalid value",
        "value must be empty when `operator` is 'Exists'",
      );
    }
    if (op !== "" && op !== "Equal" && op !== "Exists") {
      throw invalid(
        kind,
        name,
        `${path}.operator`,
        "Unsupported value",
        `"${op}": supported values: "Equal", "Exists"`,
      );
    }
    if (t.effect && !["NoSchedule", "PreferNoSchedule", "NoExecute"].includes(t.effect)) {
      throw invalid(
        kind,
        name,
        `${path}.effect`,
        "Unsupported value",
        `"${t.effect}": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule"`,
      );
    }
  });
}

function mungedSpec(spec: Obj): string {
  const s = structuredClone(spec);
  delete s.tolerations;
  delete s.activeDeadlineSeconds;
  delete s.terminationGracePeriodSeconds;
  for (const list of ["containers", "initContainers"]) {
    if (Array.isArray(s[list])) { for (const c of s[list] as Obj[]) delete c.image; }
  }
  return JSON.stringify(sortKeys(s));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Obj)[k])]));
  }
  return v;
}

/** ValidatePodUpdate (the parts about spec): throws a 422 Invalid like the real server. */
export function validatePodUpdate(oldPod: Obj, newPod: Obj): void {
  const name = String(meta(oldPod).name);
  const oldSpec = (oldPod.spec ?? {}) as Obj;
  const newSpec = (newPod.spec ?? {}) as Obj;
  const oldTols = (Array.isArray(oldSpec.tolerations) ? oldSpec.tolerations : []) as Toleration[];
  const newTols = (Array.isArray(newSpec.tolerations) ? newSpec.tolerations : []) as Toleration[];
  const shapes = new Set(newTols.map(shape));
  if (!oldTols.every((t) => shapes.has(shape(t)))) {
    throw invalid(
      "Pod",
      name,
      "spec.tolerations",
      "Forbidden",
      "existing toleration can not be modified except its tolerationSeconds",
    );
  }
  validateTolerations("Pod", name, newTols);
  if (mungedSpec(oldSpec) !== mungedSpec(newSpec)) {
    throw invalid(
      "Pod",
      name,
      "spec",
      "Forbidden",
      "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`," +
        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)," +
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    );
  }
}
