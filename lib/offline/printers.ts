/**
 * Table cells computed from a JSON object, column by column, as the apiserver's server-side
 * printers compute them (pkg/printers/internalversion) for the kinds a node's operator looks at:
 * pods, nodes, services, endpoints, configmaps, secrets, deployments. Any kind gets Name, Age,
 * Created At and Namespace. Used offline to keep a cached Table coherent with fresher JSON data.
 */

// deno-lint-ignore no-explicit-any
type Any = any;
/** Computes one cell; `now` is the answer's time (epoch ms), for ages. */
type Cell = (o: Any, now: number) => unknown;

/** Go's duration.HumanDuration, as printers show ages. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < -1) return "<invalid>";
  if (s < 0) return "0s";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return h % 24 === 0 ? `${h / 24 | 0}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 8) {
    const dy = Math.floor(h / 24) % 365;
    return dy === 0 ? `${Math.floor(h / 24 / 365)}y` : `${Math.floor(h / 24 / 365)}y${dy}d`;
  }
  return `${Math.floor(h / 24 / 365)}y`;
}

/** translateTimestampSince: "<unknown>" for no time. */
export function since(ts: unknown, now: number): string {
  const t = typeof ts === "string" ? Date.parse(ts) : NaN;
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now - t);
}

const none = (v: unknown) => (v === undefined || v === null || v === "" ? "<none>" : v);
const count = (m: unknown) => Object.keys((m as Record<string, unknown>) ?? {}).length;

function labelSelector(sel: Any): string {
  if (!sel) return "<none>";
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    const values = [...(e.values ?? [])].sort().join(",");
    if (e.operator === "In") parts.push(`${e.key} in (${values})`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin (${values})`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
  }
  return parts.length ? parts.join(",") : "<none>";
}

function podStatus(o: Any): string {
  let reason: string = o.status?.reason ?? o.status?.phase ?? "";
  const statuses: Any[] = o.status?.containerStatuses ?? [];
  let running = false;
  for (const c of [...statuses].reverse()) {
    if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
    else if (c.state?.terminated?.reason) reason = c.state.terminated.reason;
    else if (c.state?.terminated) {
      reason = c.state.terminated.signal
        ? `Signal:${c.state.terminated.signal}`
        : `ExitCode:${c.state.terminated.exitCode}`;
    } else if (c.ready && c.state?.running) running = true;
  }
  if (reason === "Completed" && running) reason = "Running";
  if (o.metadata?.deletionTimestamp) reason = o.status?.reason === "NodeLost" ? "Unknown" : "Terminating";
  return reason;
}

function podRestarts(o: Any, now: number): string {
  let restarts = 0;
  let last = 0;
  for (const c of o.status?.containerStatuses ?? []) {
    restarts += c.restartCount ?? 0;
    const t = Date.parse(c.lastState?.terminated?.finishedAt ?? "");
    if (!Number.isNaN(t) && t > last) last = t;
  }
  return restarts && last ? `${restarts} (${humanDuration(now - last)} ago)` : String(restarts);
}

function nodeStatus(o: Any): string {
  const ready = (o.status?.conditions ?? []).find((c: Any) => c.type === "Ready");
  let s = !ready ? "Unknown" : ready.status === "True" ? "Ready" : "NotReady";
  if (o.spec?.unschedulable) s += ",SchedulingDisabled";
  return s;
}

function nodeRoles(o: Any): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(o.metadata?.labels ?? {})) {
    if (k.startsWith("node-role.kubernetes.io/") && k.length > 24) roles.add(k.slice(24));
    else if (k === "kubernetes.io/role" && v) roles.add(String(v));
  }
  return roles.size ? [...roles].sort().join(",") : "<none>";
}

const address = (type: string) => (o: Any) =>
  none((o.status?.addresses ?? []).find((a: Any) => a.type === type)?.address);

function externalIp(o: Any): string {
  const ext: string[] = o.spec?.externalIPs ?? [];
  switch (o.spec?.type ?? "ClusterIP") {
    case "LoadBalancer": {
      const ips = (o.status?.loadBalancer?.ingress ?? []).map((i: Any) => i.ip ?? i.hostname).concat(ext);
      return ips.length ? ips.join(",") : "<pending>";
    }
    case "ExternalName":
      return o.spec?.externalName ?? "<none>";
    default:
      return ext.length ? ext.join(",") : "<none>";
  }
}

function ports(o: Any): string {
  const ps = (o.spec?.ports ?? []).map((p: Any) =>
    p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol ?? "TCP"}` : `${p.port}/${p.protocol ?? "TCP"}`
  );
  return ps.length ? ps.join(",") : "<none>";
}

function endpoints(o: Any): string {
  const all: string[] = [];
  for (const s of o.subsets ?? []) {
    for (const a of s.addresses ?? []) {
      if (!s.ports?.length) all.push(a.ip);
      for (const p of s.ports ?? []) all.push(`${a.ip}:${p.port}`);
    }
  }
  if (!all.length) return "<none>";
  return all.length > 3 ? `${all.slice(0, 3).join(",")} + ${all.length - 3} more...` : all.join(",");
}

const containers = (o: Any): Any[] => o.spec?.template?.spec?.containers ?? [];

/** Any kind. */
const COMMON: Record<string, Cell> = {
  "Name": (o) => o.metadata?.name ?? "",
  "Namespace": (o) => o.metadata?.namespace ?? "",
  "Age": (o, now) => since(o.metadata?.creationTimestamp, now),
  "Created At": (o) => o.metadata?.creationTimestamp ?? "",
};

/** By `group/resource` ("" group for the core API). */
const BY_RESOURCE: Record<string, Record<string, Cell>> = {
  "/pods": {
    "Ready": (o) =>
      `${(o.status?.containerStatuses ?? []).filter((c: Any) => c.ready).length}/${
        o.spec?.containers?.length ?? 0
      }`,
    "Status": podStatus,
    "Restarts": podRestarts,
    "IP": (o) => none(o.status?.podIP),
    "Node": (o) => none(o.spec?.nodeName),
    "Nominated Node": (o) => none(o.status?.nominatedNodeName),
    "Readiness Gates": (o) => {
      const gates: Any[] = o.spec?.readinessGates ?? [];
      if (!gates.length) return "<none>";
      const conds: Any[] = o.status?.conditions ?? [];
      const ok = gates.filter((g) => conds.some((c) => c.type === g.conditionType && c.status === "True"));
      return `${ok.length}/${gates.length}`;
    },
  },
  "/nodes": {
    "Status": nodeStatus,
    "Roles": nodeRoles,
    "Version": (o) => o.status?.nodeInfo?.kubeletVersion ?? "",
    "Internal-IP": address("InternalIP"),
    "External-IP": address("ExternalIP"),
    "OS-Image": (o) => o.status?.nodeInfo?.osImage ?? "<unknown>",
    "Kernel-Version": (o) => o.status?.nodeInfo?.kernelVersion ?? "<unknown>",
    "Container-Runtime": (o) => o.status?.nodeInfo?.containerRuntimeVersion ?? "<unknown>",
  },
  "/services": {
    "Type": (o) => o.spec?.type ?? "ClusterIP",
    "Cluster-IP": (o) => none(o.spec?.clusterIP),
    "External-IP": externalIp,
    "Port(s)": ports,
    "Selector": (o) => {
      const sel = Object.entries(o.spec?.selector ?? {}).map(([k, v]) => `${k}=${v}`).sort();
      return sel.length ? sel.join(",") : "<none>";
    },
  },
  "/endpoints": { "Endpoints": endpoints },
  "/configmaps": { "Data": (o) => count(o.data) + count(o.binaryData) },
  "/secrets": { "Type": (o) => o.type ?? "", "Data": (o) => count(o.data) },
  "apps/deployments": {
    "Ready": (o) => `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 1}`,
    "Up-to-date": (o) => o.status?.updatedReplicas ?? 0,
    "Available": (o) => o.status?.availableReplicas ?? 0,
    "Containers": (o) => containers(o).map((c) => c.name).join(","),
    "Images": (o) => containers(o).map((c) => c.image).join(","),
    "Selector": (o) => labelSelector(o.spec?.selector),
  },
};

/** A column of a Table (meta.k8s.io TableColumnDefinition). */
export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

/**
 * A function computing a row's cells for these columns from an object, or undefined when a
 * column cannot be derived for this resource.
 */
export function cellsFor(
  group: string,
  resource: string,
  columns: ColumnDefinition[],
): ((o: unknown, now: number) => unknown[]) | undefined {
  const own = BY_RESOURCE[`${group}/${resource}`] ?? {};
  const fns = columns.map((c) => own[c.name] ?? COMMON[c.name]);
  if (fns.some((f) => !f)) return undefined;
  return (o, now) => fns.map((f) => f!(o, now));
}

const col = (name: string, priority = 0, type = "string", format = ""): ColumnDefinition => ({
  name,
  type,
  format: name === "Name" ? "name" : format,
  description: name,
  priority,
});

/** The columns the apiserver prints for a resource by default (kubectl's columns). */
export function defaultColumns(group: string, resource: string): ColumnDefinition[] {
  const names: Record<string, Array<string | [string, number]>> = {
    "/pods": [
      "Name",
      "Ready",
      "Status",
      "Restarts",
      "Age",
      ["IP", 1],
      ["Node", 1],
      ["Nominated Node", 1],
      ["Readiness Gates", 1],
    ],
    "/nodes": [
      "Name",
      "Status",
      "Roles",
      "Age",
      "Version",
      ["Internal-IP", 1],
      ["External-IP", 1],
      ["OS-Image", 1],
      ["Kernel-Version", 1],
      ["Container-Runtime", 1],
    ],
    "/services": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", ["Selector", 1]],
    "/endpoints": ["Name", "Endpoints", "Age"],
    "/configmaps": ["Name", "Data", "Age"],
    "/secrets": ["Name", "Type", "Data", "Age"],
    "apps/deployments": [
      "Name",
      "Ready",
      "Up-to-date",
      "Available",
      "Age",
      ["Containers", 1],
      ["Images", 1],
      ["Selector", 1],
    ],
  };
  const known = names[`${group}/${resource}`];
  if (!known) return [col("Name"), col("Created At", 0, "date")];
  return known.map((n) => (Array.isArray(n) ? col(n[0], n[1]) : col(n)));
}
