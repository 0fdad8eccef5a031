/**
 * The house's layering, checked: no import cycle between the modules of lib/ and main.ts, and no
 * module that imports a layer above its own. Type-only imports count (they are what a reader
 * follows). Tests (`*_test.ts`) may import anything.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { importsOf, layerOf, LAYERS, libModules, violations } from "./support/import_graph.ts";

Deno.test("import graph: every lib/ module has a layer", async () => {
  const unplaced = (await libModules()).filter((m) => layerOf(m) === undefined);
  assertEquals(unplaced, [], `give these a layer in tests/support/import_graph.ts LAYERS`);
});

Deno.test("import graph: no cycle and no import of a layer above (or of a sibling at the same layer)", async () => {
  const graph = await importsOf(await libModules());
  assertEquals(violations(graph), { cycles: [], upward: [] });
});

Deno.test("import graph check: it does catch a cycle and an upward import", () => {
  const graph = new Map<string, string[]>([
    ["lib/proxy/a.ts", ["lib/offline/b.ts"]], // a sibling at the same layer
    ["lib/offline/b.ts", ["lib/router.ts"]], // a layer above
    ["lib/router.ts", ["lib/proxy/a.ts"]],
    ["lib/cache/x.ts", ["lib/cache/y.ts"]],
    ["lib/cache/y.ts", ["lib/cache/x.ts"]],
  ]);
  const v = violations(graph);
  assertEquals(v.upward, ["lib/proxy/a.ts -> lib/offline/b.ts", "lib/offline/b.ts -> lib/router.ts"]);
  assertEquals(v.cycles.length, 2);
  assertEquals(LAYERS.proxy, LAYERS.offline);
});
