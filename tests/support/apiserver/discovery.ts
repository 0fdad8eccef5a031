/**
 * Discovery documents, /version and a minimal OpenAPI. /api and /apis answer as a 1.31 apiserver
 * does: aggregated discovery (APIGroupDiscoveryList) in apidiscovery.k8s.io v2 or v2beta1, whichever
 * the client's Accept lists first, else the legacy documents (/api, /api/v1, /apis, /apis/<g>,
 * /apis/<g>/<v>) that plain application/json asks for.
 */
import { apiGroups, groupVersion, type ResourceDef, RESOURCES } from "./resources.ts";

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

/** The aggregated discovery versions served (a 1.31 apiserver serves both). */
export type DiscoveryVersion = "v2" | "v2beta1";

/**
 * The aggregated discovery version a client's Accept asks for, like the apiserver negotiates: the
 * first acceptable media range (by q, then order) that it can produce. undefined when that is a
 * plain JSON range (the legacy documents) or when no aggregated range is acceptable.
 */
export function aggregatedVersion(accept: string): DiscoveryVersion | undefined {
  const ranges = accept.split(",").map((clause, index) => {
    const [type, ...rest] = clause.split(";").map((x) => x.trim());
    const params = new Map(
      rest.filter((p) => p.includes("=")).map((p) => {
        const eq = p.indexOf("=");
        return [p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim()] as const;
      }),
    );
    const q = Number(params.get("q") ?? "1");
    return { type: type.toLowerCase(), params, q: Number.isFinite(q) ? q : 0, index };
  }).filter((r) => r.q > 0).sort((a, b) => b.q - a.q || a.index - b.index);
  for (const r of ranges) {
    const json = r.type === "application/json" || r.type === "*/*" || r.type === "application/*";
    const as = r.params.get("as");
    if (as === undefined) {
      if (json) return undefined;
      continue;
    }
    const v = r.params.get("v");
    if (
      json && as === "APIGroupDiscoveryList" && r.params.get("g") === "apidiscovery.k8s.io" &&
      (v === "v2" || v === "v2beta1")
    ) return v;
  }
  return undefined;
}

/** The Content-Type of an aggregated discovery answer. */
export function aggregatedContentType(v: DiscoveryVersion): string {
  return `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`;
}

function resourceDiscovery(r: ResourceDef): Obj {
  const item: Obj = {
    resource: r.resource,
    responseKind: { group: r.group, version: r.version, kind: r.kind },
    scope: r.namespaced ? "Namespaced" : "Cluster",
    singularResource: r.singular,
    verbs: r.verbs,
  };
  if (r.shortNames) item.shortNames = r.shortNames;
  if (r.categories) item.categories = r.categories;
  const subs = Object.entries(r.subresources);
  if (subs.length > 0) {
    item.subresources = subs.map(([name, s]) => ({
      subresource: name,
      responseKind: { group: s.group ?? r.group, version: s.version ?? r.version, kind: s.kind },
      verbs: s.verbs,
    }));
  }
  return item;
}

/**
 * Aggregated discovery for /api (the core group) or /apis (every other group), in `v`; undefined
 * for other paths. v2 and v2beta1 have the same shape; only apiVersion tells them apart.
 */
export function aggregatedDiscovery(path: string, v: DiscoveryVersion): Obj | undefined {
  const p = path.replace(/\/+$/, "");
  if (p !== "/api" && p !== "/apis") return undefined;
  const groups = p === "/api" ? [{ name: "", version: "v1" }] : apiGroups();
  const items = groups.map((g) => {
    const versions = [g.version].map((version) => ({
      version,
      resources: RESOURCES.filter((r) => r.group === g.name && r.version === version).map(resourceDiscovery),
      freshness: "Current",
    }));
    return {
      metadata: g.name ? { name: g.name, creationTimestamp: null } : { creationTimestamp: null },
      versions,
    };
  });
  return { kind: "APIGroupDiscoveryList", apiVersion: `apidiscovery.k8s.io/${v}`, metadata: {}, items };
}
