/**
 * lib/'s import graph (relative imports of every non-test module, read from the source: `from "…"`
 * and `import("…")`, type-only imports included) and the layering it must keep. Read from the source
 * rather than from `deno info main.ts` so that modules main.ts does not reach are checked too.
 */
import { ROOT } from "./harness.ts";

/**
 * Layers, lowest first. A module imports only its own folder or a lower layer; folders at the same
 * layer (proxy/ and offline/: the online and offline paths) do not import each other.
 */
export const LAYERS: Record<string, number> = {
  "errors.ts": 0,
  "log.ts": 0,
  "version.ts": 0,
  "events.ts": 1,
  "timers.ts": 0,
  config: 2,
  files: 3,
  http: 4,
  http2: 4,
  protobuf: 4,
  request: 4,
  store: 4,
  certs: 4,
  listener: 5,
  kubeconfig: 5,
  identity: 6,
  upstream: 7,
  cache: 7,
  rewrite: 8,
  exchange: 9,
  proxy: 10,
  offline: 10,
  admin: 11,
  "in_cluster.ts": 11,
  autonomy: 12,
  "router.ts": 12,
  "server_policies.ts": 13,
  "server.ts": 14,
  cli: 15,
  "main.ts": 16,
};

/** The folder (or top-level file) a module belongs to: `lib/cache/cache.ts` → `cache`. */
export function unitOf(module: string): string {
  const parts = module.replace(/^lib\//, "").split("/");
  return parts[0];
}

export function layerOf(module: string): number | undefined {
  return LAYERS[unitOf(module)];
}

/** main.ts and every non-test .ts module under lib/, relative to the repository root. */
export async function libModules(): Promise<string[]> {
  const out = ["main.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${ROOT}/${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(path);
    }
  };
  await walk("lib");
  return out.sort();
}

const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)"(\.{1,2}\/[^"]+)"/gm;

/** Each module's relative imports, resolved to repository paths. */
export async function importsOf(modules: string[]): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const m of modules) {
    const text = await Deno.readTextFile(`${ROOT}/${m}`);
    const deps = new Set<string>();
    for (const match of text.matchAll(IMPORT)) {
      const url = new URL(match[1], `file:///${m}`);
      deps.add(url.pathname.slice(1));
    }
    graph.set(m, [...deps].filter((d) => d.startsWith("lib/") || d === "main.ts"));
  }
  return graph;
}

/** Import cycles (each once, as a path) and imports of a higher layer or a same-layer sibling. */
export function violations(graph: Map<string, string[]>): { cycles: string[]; upward: string[] } {
  const upward: string[] = [];
  for (const [m, deps] of graph) {
    for (const d of deps) {
      if (unitOf(m) === unitOf(d)) continue;
      const [lm, ld] = [layerOf(m), layerOf(d)];
      if (lm === undefined || ld === undefined || ld >= lm) upward.push(`${m} -> ${d}`);
    }
  }
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (m: string) => {
    state.set(m, "open");
    stack.push(m);
    for (const d of graph.get(m) ?? []) {
      if (state.get(d) === "open") cycles.push([...stack.slice(stack.indexOf(d)), d].join(" -> "));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(m, "done");
  };
  for (const m of graph.keys()) if (!state.has(m)) visit(m);
  return { cycles, upward };
}
