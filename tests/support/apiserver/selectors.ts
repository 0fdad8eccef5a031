/**
 * Label and field selectors: parsing as the apiserver accepts them, and matching objects.
 */
import { badRequest } from "./status.ts";

type Obj = Record<string, unknown>;

/** One label requirement. */
interface LabelReq {
  key: string;
  op: "=" | "!=" | "in" | "notin" | "exists" | "!" | "gt" | "lt";
  values: string[];
}

/** A parsed selector: a predicate over objects. */
export type Matcher = (obj: Obj) => boolean;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((p) => p.trim()).filter((p) => p !== "");
}

function parseLabelReq(part: string): LabelReq {
  let m = part.match(/^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/);
  if (m) {
    return { key: m[1], op: m[2] as "in" | "notin", values: m[3].split(",").map((v) => v.trim()) };
  }
  m = part.match(/^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*([^=!<>\s]*)$/);
  if (m) {
    const op = m[2] === "==" ? "=" : m[2] === ">" ? "gt" : m[2] === "<" ? "lt" : m[2] as "=" | "!=";
    return { key: m[1], op, values: [m[3]] };
  }
  m = part.match(/^!\s*([^=!<>\s(),]+)$/);
  if (m) return { key: m[1], op: "!", values: [] };
  m = part.match(/^([^=!<>\s(),]+)$/);
  if (m) return { key: m[1], op: "exists", values: [] };
  throw badRequest(`unable to parse requirement: found '${part}', expected: in, notin, =, ==, !=, gt, lt`);
}

/** Parses a labelSelector query value; "" matches everything. */
export function parseLabelSelector(sel: string): Matcher {
  const reqs = splitTopLevel(sel).map(parseLabelReq);
  return (obj) => {
    const labels = ((obj.metadata as Obj | undefined)?.labels ?? {}) as Record<string, string>;
    return reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      const v = labels[r.key];
      switch (r.op) {
        case "=":
          return has && v === r.values[0];
        case "!=":
          return !has || v !== r.values[0];
        case "in":
          return has && r.values.includes(v);
        case "notin":
          return !has || !r.values.includes(v);
        case "exists":
          return has;
        case "!":
          return !has;
        case "gt":
          return has && Number(v) > Number(r.values[0]);
        case "lt":
          return has && Number(v) < Number(r.values[0]);
      }
    });
  };
}

const COMMON = ["metadata.name", "metadata.namespace"];
const FIELDS: Record<string, string[]> = {
  pods: [
    ...COMMON,
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
  ],
  nodes: [...COMMON, "spec.unschedulable"],
  secrets: [...COMMON, "type"],
  namespaces: [...COMMON, "status.phase"],
  events: [
    ...COMMON,
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
  ],
};

function fieldValue(obj: Obj, path: string): string {
  let cur: unknown = obj;
  for (const p of path.split(".")) cur = (cur as Obj | undefined)?.[p];
  if (path === "source") cur = ((obj.source as Obj | undefined)?.component) ?? "";
  if (cur === undefined || cur === null) {
    return path === "spec.unschedulable" || path === "spec.hostNetwork" ? "false" : "";
  }
  return String(cur);
}

/** Parses a fieldSelector for a resource; unsupported fields give 400 as on the real server. */
export function parseFieldSelector(sel: string, resource: string, custom: boolean): Matcher {
  const allowed = FIELDS[resource] ?? COMMON;
  const reqs = splitTopLevel(sel).map((part) => {
    const m = part.match(/^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${sel}'; can't understand '${part}'`);
    if (!allowed.includes(m[1])) {
      throw badRequest(
        custom
          ? `"${m[1]}" is not a known field selector: only "metadata.name", "metadata.namespace"`
          : `field label not supported: ${m[1]}`,
      );
    }
    return { field: m[1], neg: m[2] === "!=", value: m[3].trim() };
  });
  return (obj) => reqs.every((r) => (fieldValue(obj, r.field) === r.value) !== r.neg);
}
