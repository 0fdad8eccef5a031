/**
 * Legacy discovery documents (/api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v>), /version and a
 * minimal OpenAPI. Aggregated discovery is not offered: clients see plain application/json and fall
 * back to the legacy documents, as they do against older servers.
 */
import { apiGroups, groupVersion, RESOURCES } from "./resources.ts";

type Obj = Record<string, unknown>;

/** What GET /version answers. */
export const VERSION_INFO = {
  major: "1",
  minor: "31",
  gitVersion: "v1.31.0",
  gitCommit: "9edcffcde5595e8a5b1a35f88c421764e575afce",
  gitTreeState: "clean",
  buildDate: "2024-08-13T07:28:49Z",
  goVersion: "go1.22.5",
  compiler: "gc",
  platform: "linux/amd64",
};

function groupDoc(name: string, version: string): Obj {
  const gv = { groupVersion: `${name}/${version}`, version };
  return { name, versions: [gv], preferredVersion: gv };
}

/** Answers a discovery path, or undefined if the path is not a discovery document. */
export function discovery(path: string, serverAddress: string): Obj | undefined {
  const p = path.replace(/\/+$/, "");
  if (p === "/api") {
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
    };
  }
  if (p === "/apis") {
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: apiGroups().map((g) => groupDoc(g.name, g.version)),
    };
  }
  let m = p.match(/^\/apis\/([^/]+)$/);
  if (m) {
    const g = apiGroups().find((x) => x.name === m![1]);
    return g ? { kind: "APIGroup", apiVersion: "v1", ...groupDoc(g.name, g.version) } : undefined;
  }
  m = p.match(/^\/api\/(v1)$/) ?? p.match(/^\/apis\/([^/]+\/[^/]+)$/);
  if (!m) return undefined;
  const gvName = m[1];
  const defs = RESOURCES.filter((r) => groupVersion(r) === gvName);
  if (defs.length === 0) return undefined;
  const resources: Obj[] = [];
  for (const r of defs) {
    const item: Obj = {
      name: r.resource,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.verbs,
    };
    if (r.shortNames) item.shortNames = r.shortNames;
    if (r.categories) item.categories = r.categories;
    resources.push(item);
    for (const [sub, s] of Object.entries(r.subresources)) {
      const si: Obj = { name: `${r.resource}/${sub}`, singularName: "", namespaced: r.namespaced };
      if (s.group) si.group = s.group;
      if (s.version) si.version = s.version;
      si.kind = s.kind;
      si.verbs = s.verbs;
      resources.push(si);
    }
  }
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: gvName, resources };
}

/** A minimal but valid OpenAPI v2 document. */
export function openapiV2(): Obj {
  return {
    swagger: "2.0",
    info: { title: "Kubernetes", version: VERSION_INFO.gitVersion },
    paths: {},
    definitions: {},
  };
}

/** OpenAPI v3 root: no per-group documents offered. */
export function openapiV3(): Obj {
  return { paths: {} };
}
