/**
 * The resource types the fake kube-apiserver serves, with what discovery needs to describe them.
 */

/** One top-level resource (e.g. core/v1 pods) and its subresources. */
export interface ResourceDef {
  group: string;
  version: string;
  resource: string;
  kind: string;
  singular: string;
  namespaced: boolean;
  shortNames?: string[];
  categories?: string[];
  verbs: string[];
  /** Subresource name → discovery description of it. */
  subresources: Record<string, SubresourceDef>;
}

/** A subresource as discovery lists it (`pods/status`). */
export interface SubresourceDef {
  kind: string;
  verbs: string[];
  group?: string;
  version?: string;
}

const ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS: SubresourceDef = { kind: "", verbs: ["get", "patch", "update"] };

function def(
  group: string,
  version: string,
  resource: string,
  kind: string,
  namespaced: boolean,
  extra: Partial<ResourceDef> = {},
): ResourceDef {
  return {
    group,
    version,
    resource,
    kind,
    singular: kind.toLowerCase(),
    namespaced,
    verbs: ALL,
    subresources: {},
    ...extra,
  };
}

function withKind(kind: string, sub: SubresourceDef): SubresourceDef {
  return { ...sub, kind: sub.kind || kind };
}

/** Every resource served, in discovery order. */
export const RESOURCES: ResourceDef[] = [
  def("", "v1", "configmaps", "ConfigMap", true, { shortNames: ["cm"] }),
  def("", "v1", "endpoints", "Endpoints", true, { shortNames: ["ep"], singular: "endpoints" }),
  def("", "v1", "events", "Event", true, { shortNames: ["ev"] }),
  def("", "v1", "namespaces", "Namespace", false, {
    shortNames: ["ns"],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    subresources: { status: withKind("Namespace", STATUS) },
  }),
  def("", "v1", "nodes", "Node", false, {
    shortNames: ["no"],
    subresources: { status: withKind("Node", STATUS) },
  }),
  def("", "v1", "pods", "Pod", true, {
    shortNames: ["po"],
    categories: ["all"],
    subresources: {
      exec: { kind: "PodExecOptions", verbs: ["create", "get"] },
      log: { kind: "Pod", verbs: ["get"] },
      status: withKind("Pod", STATUS),
    },
  }),
  def("", "v1", "secrets", "Secret", true),
  def("", "v1", "serviceaccounts", "ServiceAccount", true, {
    shortNames: ["sa"],
    subresources: {
      token: { kind: "TokenRequest", verbs: ["create"], group: "authentication.k8s.io", version: "v1" },
    },
  }),
  def("", "v1", "services", "Service", true, {
    shortNames: ["svc"],
    categories: ["all"],
    subresources: { status: withKind("Service", STATUS) },
  }),
  def("apps", "v1", "deployments", "Deployment", true, {
    shortNames: ["deploy"],
    categories: ["all"],
    subresources: {
      scale: { kind: "Scale", verbs: ["get", "patch", "update"], group: "autoscaling", version: "v1" },
      status: withKind("Deployment", STATUS),
    },
  }),
  def("coordination.k8s.io", "v1", "leases", "Lease", true),
  def("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
  // RBAC objects (read by rbac.ts), so a manifest's Roles and bindings can be applied and enforced.
  def("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
  def("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
  def("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
  def("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
  def("edge.example.com", "v1", "widgets", "Widget", true, {
    shortNames: ["wd"],
    categories: ["all"],
  }),
];

/** "v1" or "apps/v1". */
export function groupVersion(d: { group: string; version: string }): string {
  return d.group ? `${d.group}/${d.version}` : d.version;
}

/** Finds a resource by group, version and plural name. */
export function findResource(group: string, version: string, resource: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.resource === resource);
}

/** Finds a resource by apiVersion ("v1", "apps/v1") and kind. */
export function findByKind(apiVersion: string, kind: string): ResourceDef | undefined {
  return RESOURCES.find((r) => groupVersion(r) === apiVersion && r.kind === kind);
}

/** The API groups (other than core) with their single version. */
export function apiGroups(): { name: string; version: string }[] {
  const seen = new Map<string, string>();
  for (const r of RESOURCES) if (r.group && !seen.has(r.group)) seen.set(r.group, r.version);
  return [...seen].map(([name, version]) => ({ name, version }));
}

/** `pods` or `deployments.apps`, as error messages name a resource. */
export function qualifiedResource(d: { group: string; resource: string }): string {
  return d.group ? `${d.resource}.${d.group}` : d.resource;
}
