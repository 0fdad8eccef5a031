/** The simulated node lifecycle + taint manager follow the real eviction rule (time scaled). */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { NodeLifecycle } from "./support/apiserver/node_lifecycle.ts";
import { addDefaultTolerations } from "./support/apiserver/pod_rules.ts";
import { findResource } from "./support/apiserver/resources.ts";
import { type Obj, ObjectStore } from "./support/apiserver/store.ts";
import { eventually } from "./support/harness.ts";

const NODES = findResource("", "v1", "nodes")!;
const PODS = findResource("", "v1", "pods")!;
const U = "node.kubernetes.io/unreachable";

function pod(name: string, tolerations?: Obj[], defaults = true): Obj {
  const p: Obj = {
    metadata: { name, namespace: "default" },
    spec: { nodeName: "n1", containers: [{ name: "c" }], ...(tolerations ? { tolerations } : {}) },
  };
  if (defaults) addDefaultTolerations(p);
  return p;
}

Deno.test("taint manager: first matching toleration, smallest seconds, forever cancels, none evicts at once", async () => {
  const store = new ObjectStore();
  const life = new NodeLifecycle(store, 20); // 300 s → 6 s
  try {
    store.create(NODES, { metadata: { name: "n1" } });
    store.create(NODES, { metadata: { name: "n2" } });
    store.create(PODS, pod("default-300"));
    store.create(
      PODS,
      pod("forever", [{ key: U, operator: "Exists", effect: "NoExecute" }, {
        key: "node.kubernetes.io/not-ready",
        operator: "Exists",
        effect: "NoExecute",
      }]),
    );
    // A second, unlimited toleration behind the 300 s one: the first match (300 s) is used.
    const appended = pod("appended");
    ((appended.spec as Obj).tolerations as Obj[]).push({ key: U, operator: "Exists", effect: "NoExecute" });
    store.create(PODS, appended);
    store.create(PODS, pod("none", undefined, false));
    store.create(PODS, pod("fixed-later"));
    const elsewhere = pod("other-node");
    (elsewhere.spec as Obj).nodeName = "n2";
    store.create(PODS, elsewhere);

    life.cut("n1");
    const node = store.get(NODES, undefined, "n1")!;
    assertEquals(
      ((node.spec as Obj).taints as Obj[]).map((t) => `${t.key}:${t.effect}`),
      [`${U}:NoSchedule`, `${U}:NoExecute`],
    );
    await eventually(
      () => life.evictions.some((e) => e.name === "none"),
      "the pod without toleration evicted",
    );
    // While its eviction is pending, "fixed-later" loses its seconds: the eviction is cancelled.
    const fixed = store.get(PODS, "default", "fixed-later")!;
    for (const t of (fixed.spec as Obj).tolerations as Obj[]) delete t.tolerationSeconds;
    store.update(PODS, fixed);
    await eventually(
      () =>
        life.evictions.some((e) => e.name === "default-300") &&
        life.evictions.some((e) => e.name === "appended"),
      "the 300 s pods evicted",
    );
    assert(life.evictions.find((e) => e.name === "none")!.afterMs < 300 * 20);
    assert(life.evictions.find((e) => e.name === "default-300")!.afterMs >= 300 * 20);
    assertEquals(life.evictions.map((e) => e.name).sort(), ["appended", "default-300", "none"]);
    for (const n of ["forever", "fixed-later", "other-node"]) assert(store.get(PODS, "default", n), n);
    life.restore("n1");
    assertEquals((store.get(NODES, undefined, "n1")!.spec as Obj).taints, undefined);
  } finally {
    life.stop();
  }
});
