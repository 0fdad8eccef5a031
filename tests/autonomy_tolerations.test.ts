import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  ANNOTATION,
  firstMatching,
  isCovered,
  NOT_READY,
  planCover,
  planRestore,
  toleratesTaint,
  type Toleration,
  UNREACHABLE,
} from "../lib/autonomy/tolerations.ts";
import { jsonPatch } from "./support/apiserver/patch.ts";
import { addDefaultTolerations, validatePodUpdate } from "./support/apiserver/pod_rules.ts";

const DEFAULTS: Toleration[] = [
  { key: NOT_READY, operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
  { key: UNREACHABLE, operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
];
const pod = (tolerations?: Toleration[], annotations?: Record<string, string>) => ({
  metadata: { name: "p", namespace: "default", ...(annotations ? { annotations } : {}) },
  spec: { nodeName: "edge-1", ...(tolerations ? { tolerations } : {}) },
});

Deno.test("toleratesTaint follows corev1 ToleratesTaint", () => {
  const taint = { key: UNREACHABLE, effect: "NoExecute" };
  assert(toleratesTaint({ key: UNREACHABLE, operator: "Exists", effect: "NoExecute" }, taint));
  assert(toleratesTaint({ operator: "Exists" }, taint)); // wildcard
  assert(toleratesTaint({ key: UNREACHABLE, operator: "Exists" }, taint)); // any effect
  assert(!toleratesTaint({ key: UNREACHABLE, operator: "Exists", effect: "NoSchedule" }, taint));
  assert(toleratesTaint({ key: UNREACHABLE, value: "" }, taint)); // Equal, empty value
  assert(!toleratesTaint({ key: UNREACHABLE, value: "x" }, taint));
  assert(!toleratesTaint({ key: NOT_READY, operator: "Exists" }, taint));
});

Deno.test("the default 300 s tolerations: seconds removed at their exact index, guarded by a test op", () => {
  const tols = [{ key: "gpu", operator: "Exists", effect: "NoSchedule" }, ...DEFAULTS];
  const ops = planCover(pod(tols))!;
  assertEquals(ops, [
    { op: "test", path: "/spec/tolerations", value: tols },
    { op: "remove", path: "/spec/tolerations/1/tolerationSeconds" },
    { op: "remove", path: "/spec/tolerations/2/tolerationSeconds" },
    {
      op: "add",
      path: "/metadata/annotations",
      value: { [ANNOTATION]: JSON.stringify({ [NOT_READY]: 300, [UNREACHABLE]: 300 }) },
    },
  ]);
});

Deno.test("appending a toleration behind a matching one is not coverage (the first match is used)", () => {
  const tols = [...DEFAULTS, { key: UNREACHABLE, operator: "Exists", effect: "NoExecute" }];
  assertEquals(firstMatching(tols, UNREACHABLE), 1);
  assert(!isCovered(pod(tols)));
  const ops = planCover(pod(tols))!;
  assert(ops.some((o) => o.op === "remove" && o.path === "/spec/tolerations/1/tolerationSeconds"));
});

Deno.test("no tolerations at all: both are added without seconds; restore gives them the default", () => {
  const ops = planCover(pod())!;
  assertEquals(ops[0], {
    op: "add",
    path: "/spec/tolerations",
    value: [
      { key: NOT_READY, operator: "Exists", effect: "NoExecute" },
      { key: UNREACHABLE, operator: "Exists", effect: "NoExecute" },
    ],
  });
  const covered = pod(ops[0].value as Toleration[], {
    [ANNOTATION]: JSON.stringify({ [NOT_READY]: 300, [UNREACHABLE]: 300 }),
  });
  assert(isCovered(covered));
  assertEquals(planCover(covered), null);
  const back = planRestore(covered)!;
  assertEquals(back.filter((o) => o.op === "add").map((o) => [o.path, o.value]), [
    ["/spec/tolerations/0/tolerationSeconds", 300],
    ["/spec/tolerations/1/tolerationSeconds", 300],
  ]);
  assertEquals(back.at(-1), { op: "remove", path: `/metadata/annotations/${ANNOTATION.replace("/", "~1")}` });
});

Deno.test("a custom 600 s is remembered and restored as 600 s; other annotations are kept", () => {
  const tols: Toleration[] = [{ ...DEFAULTS[0] }, { ...DEFAULTS[1], tolerationSeconds: 600 }];
  const ops = planCover(pod(tols, { team: "a" }))!;
  const ann = ops.find((o) => o.path.startsWith("/metadata/annotations/"))!;
  assertEquals(JSON.parse(ann.value as string), { [NOT_READY]: 300, [UNREACHABLE]: 600 });
});

Deno.test("pods that tolerate forever by their own spec are never touched", () => {
  const own = [{ key: NOT_READY, operator: "Exists", effect: "NoExecute" }, {
    key: UNREACHABLE,
    operator: "Exists",
    effect: "NoExecute",
  }];
  assertEquals(planCover(pod(own)), null);
  assertEquals(planRestore(pod(own)), null); // no annotation: not ours to restore
  assertEquals(planCover(pod([{ operator: "Exists" }])), null); // a wildcard without seconds
});

Deno.test("one wildcard toleration with seconds covers both keys: its seconds are removed once", () => {
  const ops = planCover(pod([{ operator: "Exists", tolerationSeconds: 60, effect: "NoExecute" }]))!;
  assertEquals(ops.filter((o) => o.op === "remove").length, 1);
});

// The plans against the simulated apiserver's copy of the real rules: JSON patch application,
// ValidatePodUpdate's toleration rule, DefaultTolerationSeconds.

Deno.test("plans pass the pod-update validation; the naive alternatives do not", () => {
  const created: Record<string, unknown> = { metadata: { name: "p" }, spec: { containers: [{ name: "c" }] } };
  addDefaultTolerations(created);
  assertEquals((created.spec as { tolerations: Toleration[] }).tolerations, DEFAULTS);
  const covered = jsonPatch(created, planCover(created as never)) as Record<string, unknown>;
  validatePodUpdate(created, covered); // removing tolerationSeconds is allowed
  assert(isCovered(covered as never));
  const restored = jsonPatch(covered, planRestore(covered as never)) as Record<string, unknown>;
  validatePodUpdate(covered, restored);
  assertEquals((restored.spec as { tolerations: Toleration[] }).tolerations, DEFAULTS);
  assertEquals((restored.metadata as Record<string, unknown>).annotations, {});

  // Replacing the list by one without the old tolerations, or changing an operator: forbidden.
  const replaced = structuredClone(created);
  (replaced.spec as { tolerations: Toleration[] }).tolerations = [{ key: UNREACHABLE, operator: "Exists" }];
  let err: unknown;
  try {
    validatePodUpdate(created, replaced);
  } catch (e) {
    err = e;
  }
  assert(
    String((err as Error)?.message).includes(
      "existing toleration can not be modified except its tolerationSeconds",
    ),
  );
  // A stale plan (the list changed since it was read) fails its test op instead of patching a wrong index.
  const other = structuredClone(created);
  (other.spec as { tolerations: Toleration[] }).tolerations.unshift({ key: "x", operator: "Exists" });
  err = undefined;
  try {
    jsonPatch(other, planCover(created as never));
  } catch (e) {
    err = e;
  }
  assert(/testing value \/spec\/tolerations failed/.test(String((err as Error)?.message)));
});
