import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import {
  escapeFieldValue,
  fieldValue,
  matchFields,
  matchLabels,
  namedFieldSelector,
  normaliseFieldSelector,
  normaliseLabelSelector,
  parseFieldSelector,
  parseLabelSelector,
  requiredFieldValue,
  SelectorError,
} from "./selectors.ts";

Deno.test("label selector: parses every requirement form", () => {
  const cases: Array<[string, Array<[string, string, string[]]>]> = [
    ["", []],
    ["   ", []],
    ["a=b", [["a", "=", ["b"]]]],
    ["a==b", [["a", "=", ["b"]]]],
    ["a!=b", [["a", "!=", ["b"]]]],
    ["a", [["a", "exists", []]]],
    ["!a", [["a", "!", []]]],
    ["a in (y,x)", [["a", "in", ["x", "y"]]]],
    ["a notin (x, y, x)", [["a", "notin", ["x", "y"]]]],
    ["a in (x)", [["a", "=", ["x"]]]],
    ["a notin (x)", [["a", "!=", ["x"]]]],
    ["a in ()", [["a", "=", [""]]]],
    ["a in (x,)", [["a", "in", ["", "x"]]]],
    ["a=", [["a", "=", [""]]]],
    ["a>5", [["a", ">", ["5"]]]],
    ["a < +07", [["a", "<", ["7"]]]],
    ["app.kubernetes.io/name=web, tier , !canary", [
      ["app.kubernetes.io/name", "=", ["web"]],
      ["tier", "exists", []],
      ["canary", "!", []],
    ]],
    ["  a  =  b  ,c!=d", [["a", "=", ["b"]], ["c", "!=", ["d"]]]],
    ["a in (in,notin)", [["a", "in", ["in", "notin"]]]],
    ["x=in", [["x", "=", ["in"]]]],
  ];
  for (const [input, want] of cases) {
    const got = parseLabelSelector(input).requirements.map((r) => [r.key, r.op, r.values]);
    assertEquals(got, want, input);
  }
});

Deno.test("label selector: rejects invalid syntax with SelectorError", () => {
  const bad = [
    "a=b,",
    ",a=b",
    "a=b,,c=d",
    "a b",
    "a=b c",
    "a in x",
    "a in (x",
    "a in (x y)",
    "!a=b",
    "!",
    "=b",
    "a=(b)",
    "a>b",
    "a<",
    "a=b=c",
    "-a=b",
    "a=-b",
    "a=" + "v".repeat(64),
    "k".repeat(64) + "=v",
    "Bad_Prefix/a=b",
    "/a=b",
    "a/b/c=d",
    "a=b)",
    "in=b",
  ];
  for (const s of bad) {
    assertThrows(() => parseLabelSelector(s), SelectorError, s);
  }
  const err = (() => {
    try {
      parseLabelSelector("a b");
    } catch (e) {
      return e as Error;
    }
  })();
  assertEquals(err?.message.includes("a b"), true);
  assertEquals(err?.message.includes("\n"), false);
});

Deno.test("label selector: matching", () => {
  const labels = { app: "web", tier: "front", n: "10", "app.kubernetes.io/name": "x" };
  const cases: Array<[string, Record<string, string> | undefined, boolean]> = [
    ["", labels, true],
    ["", undefined, true],
    ["app=web", labels, true],
    ["app==web", labels, true],
    ["app=db", labels, false],
    ["app!=db", labels, true],
    ["missing!=db", labels, true],
    ["app!=web", labels, false],
    ["app in (db,web)", labels, true],
    ["app in (db)", labels, false],
    ["app notin (db,cache)", labels, true],
    ["missing notin (db)", labels, true],
    ["app notin (web)", labels, false],
    ["tier", labels, true],
    ["missing", labels, false],
    ["!missing", labels, true],
    ["!tier", labels, false],
    ["n>9", labels, true],
    ["n>10", labels, false],
    ["n<11", labels, true],
    ["app>1", labels, false],
    ["missing<1", labels, false],
    ["app=web,tier=front", labels, true],
    ["app=web,tier=back", labels, false],
    ["app.kubernetes.io/name=x", labels, true],
    ["app", undefined, false],
    ["!app", undefined, true],
    ["app=", { app: "" }, true],
    ["app=", labels, false],
  ];
  for (const [sel, l, want] of cases) {
    assertEquals(matchLabels(sel, l), want, `${sel} on ${JSON.stringify(l)}`);
    assertEquals(matchLabels(parseLabelSelector(sel), l), want, sel);
  }
});

Deno.test("label selector: normalisation makes equal selectors equal strings", () => {
  const groups: string[][] = [
    ["", "  "],
    ["a=b", "a==b", " a = b ", "a in (b)", "a in (b,b)", "a=b,a=b"],
    ["a!=b", "a notin (b)"],
    ["a in (x,y),b", "b,a in (y,x)", "b , a in ( y , x , x )"],
    ["a notin (x,y),!c,d=e", "d==e,!c,a notin (y,x)"],
    ["a>5", "a > 05"],
  ];
  for (const group of groups) {
    const norms = group.map(normaliseLabelSelector);
    for (const n of norms) assertEquals(n, norms[0], `group ${JSON.stringify(group)}`);
    // The canonical string parses back to itself.
    assertEquals(normaliseLabelSelector(norms[0]), norms[0]);
  }
  assertEquals(normaliseLabelSelector(""), "");
  assertEquals(normaliseLabelSelector("b , a in ( y , x )"), "a in (x,y),b");
  assertEquals(normaliseLabelSelector("!z,y,x!=1,w=2,v notin (q,p)"), "v notin (p,q),w=2,x!=1,y,!z");
  // Different meaning, different string.
  const distinct = ["a=b", "a!=b", "a", "!a", "a in (b,c)", "a notin (b,c)", "a=c", "b=b"];
  assertEquals(new Set(distinct.map(normaliseLabelSelector)).size, distinct.length);
});

Deno.test("field selector: parses, unescapes and rejects", () => {
  const cases: Array<[string, Array<[string, string, string]>]> = [
    ["", []],
    ["metadata.name=foo", [["metadata.name", "=", "foo"]]],
    ["metadata.name==foo", [["metadata.name", "=", "foo"]]],
    ["status.phase!=Running,spec.nodeName=edge-1", [["status.phase", "!=", "Running"], [
      "spec.nodeName",
      "=",
      "edge-1",
    ]]],
    ["spec.nodeName=", [["spec.nodeName", "=", ""]]],
    ["a=x\\,y\\=z\\\\", [["a", "=", "x,y=z\\"]]],
    ["a=b,,c=d", [["a", "=", "b"], ["c", "=", "d"]]],
    [" spec.nodeName =n", [["spec.nodeName", "=", "n"]]],
    ["a\\=b=c", [["a\\=b", "=", "c"]]],
  ];
  for (const [input, want] of cases) {
    assertEquals(parseFieldSelector(input).requirements.map((r) => [r.key, r.op, r.value]), want, input);
  }
  for (const bad of ["a", "a=b=c", "a=b\\", "a=b\\x", "=b", "spec name=x", "a,b=c"]) {
    assertThrows(() => parseFieldSelector(bad), SelectorError, bad);
  }
});

Deno.test("field selector: matching on nested fields", () => {
  const pod = {
    metadata: { name: "web-0", namespace: "default", generation: 3 },
    spec: { nodeName: "edge-1", hostNetwork: false, containers: [{ name: "c" }] },
    status: { phase: "Running" },
  };
  const node = { metadata: { name: "edge-1" }, spec: { unschedulable: true } };
  const cases: Array<[string, unknown, boolean]> = [
    ["", pod, true],
    ["metadata.name=web-0", pod, true],
    ["metadata.name=web-1", pod, false],
    ["metadata.namespace=default,spec.nodeName=edge-1", pod, true],
    ["spec.nodeName!=edge-1", pod, false],
    ["status.phase!=Succeeded,status.phase!=Failed", pod, true],
    ["metadata.generation=3", pod, true],
    ["spec.hostNetwork=false", pod, true],
    ["spec.unschedulable=true", node, true],
    ["metadata.namespace=", node, true],
    ["metadata.namespace!=", node, false],
    ["spec.nodeName=", node, true],
    ["spec.containers=", pod, true],
    ["spec.nodeName.deeper=x", pod, false],
    ["spec.nodeName=edge-1", null, false],
  ];
  for (const [sel, obj, want] of cases) {
    assertEquals(matchFields(sel, obj), want, sel);
  }
  assertEquals(matchFields("metadata.name=a\\,b", { metadata: { name: "a,b" } }), true);
  assertEquals(fieldValue(pod, "metadata.generation"), "3");
  assertEquals(fieldValue(pod, "spec"), "");
});

Deno.test("field selector: normalisation and helpers", () => {
  assertEquals(normaliseFieldSelector(""), "");
  assertEquals(normaliseFieldSelector("b==2,a=1"), "a=1,b=2");
  assertEquals(normaliseFieldSelector(" b=2, a==1,a=1,"), "a=1,b=2");
  // Values are taken verbatim, as the apiserver does: only keys are trimmed.
  assertEquals(normaliseFieldSelector("b=2 "), "b=2 ");
  assertEquals(normaliseFieldSelector("a=x\\,y"), "a=x\\,y");
  assertEquals(normaliseFieldSelector("a!=1,a=1") === normaliseFieldSelector("a=1"), false);
  assertEquals(escapeFieldValue("a,b=c\\"), "a\\,b\\=c\\\\");
  assertEquals(namedFieldSelector("", "a,b"), "metadata.name=a\\,b");
  assertEquals(namedFieldSelector("spec.x=y", "n"), "spec.x=y,metadata.name=n");
  assertEquals(namedFieldSelector("spec.x=y", ""), "spec.x=y");
  assertEquals(requiredFieldValue(parseFieldSelector("metadata.name=n1,spec.x=y"), "metadata.name"), "n1");
  assertEquals(requiredFieldValue(parseFieldSelector("metadata.name!=n1"), "metadata.name"), undefined);
});
