/**
 * RBAC from the stored rbac.authorization.k8s.io/v1 objects (ClusterRole, ClusterRoleBinding,
 * Role, RoleBinding), evaluated like the real authorizer for resource requests: a binding whose
 * subject is the user, one of its groups, or its ServiceAccount grants its role's rules; a rule
 * matches when apiGroups, resources (`pods/status` for a subresource) and verbs each list the
 * request's value or `*`, and resourceNames (when given) lists the object's name.
 */
import type { Identity } from "./auth.ts";
import { findResource } from "./resources.ts";
import type { AuthzAttributes } from "./status.ts";
import type { Obj, ObjectStore } from "./store.ts";

const CLUSTER_ROLES = findResource("rbac.authorization.k8s.io", "v1", "clusterroles")!;
const CLUSTER_BINDINGS = findResource("rbac.authorization.k8s.io", "v1", "clusterrolebindings")!;
const ROLES = findResource("rbac.authorization.k8s.io", "v1", "roles")!;
const BINDINGS = findResource("rbac.authorization.k8s.io", "v1", "rolebindings")!;

type Rule = { apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[] };
type Subject = { kind?: string; name?: string; namespace?: string };
type RoleRef = { kind?: string; name?: string };

function subjectMatches(s: Subject, id: Identity, bindingNs: string | undefined): boolean {
  if (s.kind === "User") return s.name === id.user;
  if (s.kind === "Group") return id.groups.includes(String(s.name));
  if (s.kind === "ServiceAccount") {
    return id.user === `system:serviceaccount:${s.namespace ?? bindingNs}:${s.name}`;
  }
  return false;
}

function ruleMatches(r: Rule, a: AuthzAttributes): boolean {
  const has = (list: string[] | undefined, v: string) => (list ?? []).some((x) => x === "*" || x === v);
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  if (!has(r.apiGroups, a.group) || !has(r.verbs, a.verb) || !has(r.resources, res)) return false;
  return !r.resourceNames?.length || r.resourceNames.includes(a.name);
}

function rulesOf(store: ObjectStore, ref: RoleRef, ns: string | undefined): Rule[] {
  const role = ref.kind === "ClusterRole"
    ? store.get(CLUSTER_ROLES, undefined, String(ref.name))
    : ns !== undefined
    ? store.get(ROLES, ns, String(ref.name))
    : undefined;
  return (role?.rules ?? []) as Rule[];
}

/** Whether the stored RBAC objects allow the request. */
export function rbacAllows(store: ObjectStore, id: Identity, a: AuthzAttributes): boolean {
  if (!a.resourceRequest) return false;
  const grants = (b: Obj, ns: string | undefined) =>
    ((b.subjects ?? []) as Subject[]).some((s) => subjectMatches(s, id, ns)) &&
    rulesOf(store, (b.roleRef ?? {}) as RoleRef, ns).some((r) => ruleMatches(r, a));
  if (store.list(CLUSTER_BINDINGS).some((b) => grants(b, undefined))) return true;
  if (!a.namespace) return false;
  return store.list(BINDINGS, a.namespace).some((b) => grants(b, a.namespace));
}
