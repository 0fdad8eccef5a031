/**
 * Server-side printing: Tables (meta.k8s.io Table) and PartialObjectMetadata, as `kubectl get` asks.
 */
import { groupVersion, type ResourceDef } from "./resources.ts";
import { meta, type Obj } from "./store.ts";

/** What representation the client asked for. */
export interface Representation {
  as: "object" | "Table" | "PartialObjectMetadata";
  /** meta.k8s.io version for Table / PartialObjectMetadata. */
  metaVersion: string;
  /** includeObject for Tables: None | Metadata | Object. */
  includeObject: string;
}

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

function col(name: string, type = "string", format = "", priority = 0, description = ""): Column {
  return { name, type, format, description: description || `${name} of the object`, priority };
}

const NAME = col("Name", "string", "name", 0, "Name must be unique within a namespace.");

/** Go's duration.HumanDuration, as the Age column shows. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return "0s";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 730) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

function age(obj: Obj): string {
  const ts = meta(obj).creationTimestamp;
  return ts ? humanDuration(Date.now() - Date.parse(String(ts))) : "<unknown>";
}

type Printer = { columns: Column[]; cells: (o: Obj) => unknown[] };

// deno-lint-ignore no-explicit-any
type Any = any;

const PRINTERS: Record<string, Printer> = {
  pods: {
    columns: [
      NAME,
      col("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
      col("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
      col("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted."),
      col(
        "Age",
        "string",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
      ),
      col("IP", "string", "", 1, "IP address allocated to the pod."),
      col("Node", "string", "", 1, "Name of the Node the Pod is assigned to."),
      col("Nominated Node", "string", "", 1, "nominatedNodeName is set when this pod preempts other pods."),
      col("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated."),
    ],
    cells: (o: Any) => {
      const total = o.spec?.containers?.length ?? 0;
      const statuses: Any[] = o.status?.containerStatuses ?? [];
      const ready = statuses.filter((c) => c.ready).length;
      const restarts = statuses.reduce((n, c) => n + (c.restartCount ?? 0), 0);
      const phase = o.metadata?.deletionTimestamp ? "Terminating" : o.status?.phase ?? "Pending";
      return [
        o.metadata.name,
        `${ready}/${total}`,
        phase,
        String(restarts),
        age(o),
        o.status?.podIP ?? "<none>",
        o.spec?.nodeName ?? "<none>",
        o.status?.nominatedNodeName ?? "<none>",
        "<none>",
      ];
    },
  },
  nodes: {
    columns: [
      NAME,
      col("Status", "string", "", 0, "The status of the node"),
      col("Roles", "string", "", 0, "The roles of the node"),
      col(
        "Age",
        "string",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
      ),
      col("Version", "string", "", 0, "Kubelet Version reported by the node."),
    ],
    cells: (o: Any) => {
      const ready = (o.status?.conditions ?? []).find((c: Any) => c.type === "Ready");
      return [
        o.metadata.name,
        ready?.status === "True" ? "Ready" : "NotReady",
        "<none>",
        age(o),
        o.status?.nodeInfo?.kubeletVersion ?? "",
      ];
    },
  },
  namespaces: {
    columns: [NAME, col("Status"), col("Age")],
    cells: (o: Any) => [o.metadata.name, o.status?.phase ?? "Active", age(o)],
  },
  deployments: {
    columns: [
      NAME,
      col("Ready"),
      col("Up-to-date", "integer"),
      col("Available", "integer"),
      col("Age"),
      col("Containers", "string", "", 1),
      col("Images", "string", "", 1),
      col("Selector", "string", "", 1),
    ],
    cells: (o: Any) => {
      const containers: Any[] = o.spec?.template?.spec?.containers ?? [];
      const sel = Object.entries(o.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
      return [
        o.metadata.name,
        `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 1}`,
        o.status?.updatedReplicas ?? 0,
        o.status?.availableReplicas ?? 0,
        age(o),
        containers.map((c) => c.name).join(","),
        containers.map((c) => c.image).join(","),
        sel,
      ];
    },
  },
  configmaps: {
    columns: [NAME, col("Data", "string"), col("Age")],
    cells: (o: Any) => [
      o.metadata.name,
      Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length,
      age(o),
    ],
  },
  secrets: {
    columns: [NAME, col("Type"), col("Data", "string"), col("Age")],
    cells: (o: Any) => [o.metadata.name, o.type ?? "Opaque", Object.keys(o.data ?? {}).length, age(o)],
  },
  // Endpoints and EndpointSlices print as the apiserver's printers do (in-cluster client tests).
  endpoints: {
    columns: [NAME, col("Endpoints"), col("Age")],
    cells: (o: Any) => {
      const eps = (o.subsets ?? []).flatMap((s: Any) =>
        (s.addresses ?? []).flatMap((a: Any) =>
          (s.ports?.length ? s.ports : [{}]).map((p: Any) =>
            p.port === undefined ? a.ip : a.ip.includes(":") ? `[${a.ip}]:${p.port}` : `${a.ip}:${p.port}`
          )
        )
      );
      return [o.metadata.name, eps.length ? eps.join(",") : "<none>", age(o)];
    },
  },
  endpointslices: {
    columns: [NAME, col("AddressType"), col("Ports"), col("Endpoints"), col("Age")],
    cells: (o: Any) => {
      const ports = (o.ports ?? []).map((p: Any) => String(p.port));
      const addrs = (o.endpoints ?? []).flatMap((e: Any) => e.addresses ?? []);
      return [
        o.metadata.name,
        o.addressType ?? "",
        ports.length ? ports.join(",") : "<unset>",
        addrs.length ? addrs.join(",") : "<unset>",
        age(o),
      ];
    },
  },
  services: {
    columns: [NAME, col("Type"), col("Cluster-IP"), col("External-IP"), col("Port(s)"), col("Age")],
    cells: (o: Any) => [
      o.metadata.name,
      o.spec?.type ?? "ClusterIP",
      o.spec?.clusterIP ?? "<none>",
      "<none>",
      (o.spec?.ports ?? []).map((p: Any) => `${p.port}/${p.protocol ?? "TCP"}`).join(","),
      age(o),
    ],
  },
};

/** The default columns every CRD without printer columns gets. */
const GENERIC: Printer = {
  columns: [
    NAME,
    col(
      "Created At",
      "date",
      "",
      0,
      "CreationTimestamp is a timestamp representing the server time when this object was created.",
    ),
  ],
  cells: (o: Any) => [o.metadata.name, o.metadata.creationTimestamp],
};

function partial(obj: Obj, metaVersion: string): Obj {
  return { kind: "PartialObjectMetadata", apiVersion: `meta.k8s.io/${metaVersion}`, metadata: meta(obj) };
}

/** A Table of objects (one row each). */
export function toTable(
  def: ResourceDef,
  objs: Obj[],
  rep: Representation,
  listMeta: Obj,
): Obj {
  const p = ["", "apps", "discovery.k8s.io"].includes(def.group)
    ? PRINTERS[def.resource] ?? GENERIC
    : GENERIC;
  const rows = objs.map((o) => {
    const row: Obj = { cells: p.cells(o) };
    if (rep.includeObject === "Object") row.object = o;
    else if (rep.includeObject !== "None") row.object = partial(o, rep.metaVersion);
    return row;
  });
  return {
    kind: "Table",
    apiVersion: `meta.k8s.io/${rep.metaVersion}`,
    metadata: listMeta,
    columnDefinitions: p.columns,
    rows,
  };
}

/** A PartialObjectMetadata for one object. */
export function toPartial(obj: Obj, rep: Representation): Obj {
  return partial(obj, rep.metaVersion);
}

/** A PartialObjectMetadataList. */
export function toPartialList(objs: Obj[], rep: Representation, listMeta: Obj): Obj {
  return {
    kind: "PartialObjectMetadataList",
    apiVersion: `meta.k8s.io/${rep.metaVersion}`,
    metadata: listMeta,
    items: objs.map((o) => partial(o, rep.metaVersion)),
  };
}

/** The Content-Type to answer with for a representation. */
export function contentTypeFor(rep: Representation): string {
  if (rep.as === "object") return "application/json";
  return `application/json;as=${rep.as};v=${rep.metaVersion};g=meta.k8s.io`;
}

/** Shapes one object (a get or a watch event) in the requested representation. */
export function represent(def: ResourceDef, obj: Obj, rep: Representation): Obj {
  if (rep.as === "Table") return toTable(def, [obj], rep, { resourceVersion: meta(obj).resourceVersion });
  if (rep.as === "PartialObjectMetadata") return toPartial(obj, rep);
  return obj;
}

/** Shapes a list in the requested representation. */
export function representList(def: ResourceDef, objs: Obj[], rep: Representation, listMeta: Obj): Obj {
  if (rep.as === "Table") return toTable(def, objs, rep, listMeta);
  if (rep.as === "PartialObjectMetadata") return toPartialList(objs, rep, listMeta);
  return { kind: `${def.kind}List`, apiVersion: groupVersion(def), metadata: listMeta, items: objs };
}

/**
 * Reads the Accept header: the first acceptable media type wins. Returns undefined when nothing
 * acceptable is listed (→ 406). Protobuf alone is not acceptable: this server answers JSON only.
 */
export function negotiate(accept: string, includeObject: string | null): Representation | undefined {
  const inc = includeObject ?? "Metadata";
  if (!accept.trim()) return { as: "object", metaVersion: "v1", includeObject: inc };
  for (const raw of accept.split(",")) {
    const [type, ...params] = raw.split(";").map((s) => s.trim());
    const p: Record<string, string> = {};
    for (const kv of params) {
      const i = kv.indexOf("=");
      if (i > 0) p[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
    }
    const jsonish = type === "application/json" || type === "*/*" || type === "application/*" ||
      type === "application/yaml";
    if (!jsonish) continue;
    if (!p.as) return { as: "object", metaVersion: "v1", includeObject: inc };
    if (p.g !== "meta.k8s.io" || (p.v !== "v1" && p.v !== "v1beta1")) continue;
    if (p.as === "Table") return { as: "Table", metaVersion: p.v, includeObject: inc };
    if (p.as === "PartialObjectMetadata" || p.as === "PartialObjectMetadataList") {
      return { as: "PartialObjectMetadata", metaVersion: p.v, includeObject: inc };
    }
  }
  return undefined;
}
