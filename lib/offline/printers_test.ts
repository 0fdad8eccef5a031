import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { cellsFor, defaultColumns, humanDuration, since } from "./printers.ts";

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

Deno.test("humanDuration: Go's duration.HumanDuration", () => {
  assertEquals(
    [5 * S, 119 * S, 2 * M, 5 * M + 3 * S, 3 * H, 3 * H + 5 * M, 30 * H, 3 * D + 2 * H, 40 * D, 800 * D].map(
      humanDuration,
    ),
    ["5s", "119s", "2m", "5m3s", "3h", "3h5m", "30h", "3d2h", "40d", "2y70d"],
  );
  assertEquals(humanDuration(-500), "0s");
  assertEquals(since(undefined, 0), "<unknown>");
});

Deno.test("pods: cells as the apiserver prints them, for the Table's own columns", () => {
  const now = Date.parse("2026-01-01T01:00:00Z");
  const pod = {
    metadata: { name: "p", namespace: "d", creationTimestamp: "2026-01-01T00:00:00Z" },
    spec: { nodeName: "n1", containers: [{ name: "a" }, { name: "b" }] },
    status: {
      phase: "Running",
      podIP: "10.0.0.1",
      containerStatuses: [
        {
          ready: true,
          restartCount: 2,
          state: { running: {} },
          lastState: { terminated: { finishedAt: "2026-01-01T00:55:00Z" } },
        },
        { ready: false, restartCount: 1, state: { waiting: { reason: "CrashLoopBackOff" } } },
      ],
    },
  };
  const cells = cellsFor("", "pods", defaultColumns("", "pods"))!;
  assertEquals(cells(pod, now), [
    "p",
    "1/2",
    "CrashLoopBackOff",
    "3 (5m ago)",
    "60m",
    "10.0.0.1",
    "n1",
    "<none>",
    "<none>",
  ]);
  const terminating = { ...pod, metadata: { ...pod.metadata, deletionTimestamp: "2026-01-01T00:59:00Z" } };
  assertEquals(cells(terminating, now)[2], "Terminating");
});

Deno.test("nodes, services, endpoints, configmaps, secrets, deployments", () => {
  const now = Date.parse("2026-01-02T00:00:00Z");
  const created = { creationTimestamp: "2026-01-01T00:00:00Z" };
  const node = {
    metadata: { name: "n", labels: { "node-role.kubernetes.io/control-plane": "" }, ...created },
    spec: { unschedulable: true },
    status: { conditions: [{ type: "Ready", status: "True" }], nodeInfo: { kubeletVersion: "v1.31.0" } },
  };
  assertEquals(cellsFor("", "nodes", defaultColumns("", "nodes").slice(0, 5))!(node, now), [
    "n",
    "Ready,SchedulingDisabled",
    "control-plane",
    "24h",
    "v1.31.0",
  ]);
  const svc = {
    metadata: { name: "s", ...created },
    spec: {
      type: "NodePort",
      clusterIP: "10.96.0.9",
      ports: [{ port: 80, nodePort: 30080, protocol: "TCP" }],
    },
  };
  assertEquals(cellsFor("", "services", defaultColumns("", "services"))!(svc, now), [
    "s",
    "NodePort",
    "10.96.0.9",
    "<none>",
    "80:30080/TCP",
    "24h",
    "<none>",
  ]);
  const ep = {
    metadata: { name: "e", ...created },
    subsets: [{ addresses: [{ ip: "1.1.1.1" }, { ip: "2.2.2.2" }], ports: [{ port: 1 }, { port: 2 }] }],
  };
  assertEquals(
    cellsFor("", "endpoints", defaultColumns("", "endpoints"))!(ep, now)[1],
    "1.1.1.1:1,1.1.1.1:2,2.2.2.2:1 + 1 more...",
  );
  const cm = { metadata: { name: "c", ...created }, data: { a: "1" }, binaryData: { b: "" } };
  assertEquals(cellsFor("", "configmaps", defaultColumns("", "configmaps"))!(cm, now), ["c", 2, "24h"]);
  const secret = { metadata: { name: "x", ...created }, type: "Opaque", data: { a: "" } };
  assertEquals(cellsFor("", "secrets", defaultColumns("", "secrets"))!(secret, now), [
    "x",
    "Opaque",
    1,
    "24h",
  ]);
  const deploy = {
    metadata: { name: "d", ...created },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: "a" } },
      template: { spec: { containers: [{ name: "c", image: "i:1" }] } },
    },
    status: { readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 },
  };
  assertEquals(cellsFor("apps", "deployments", defaultColumns("apps", "deployments"))!(deploy, now), [
    "d",
    "2/3",
    3,
    2,
    "24h",
    "c",
    "i:1",
    "app=a",
  ]);
});

Deno.test("custom resources: Name and age columns derive, custom printer columns do not", () => {
  const cols = (names: string[]) =>
    names.map((name) => ({ name, type: "string", format: "", description: "", priority: 0 }));
  assertEquals(cellsFor("example.com", "widgets", cols(["Name", "Age"]))!({ metadata: { name: "w" } }, 0), [
    "w",
    "<unknown>",
  ]);
  assertEquals(cellsFor("example.com", "widgets", cols(["Name", "Size"])), undefined);
  assertEquals(defaultColumns("example.com", "widgets").map((c) => c.name), ["Name", "Created At"]);
});
