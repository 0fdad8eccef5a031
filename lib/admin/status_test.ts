/** The admin view: cache usage per identity, the shared store walk, and the /status problems. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { EntryInfo, Store } from "../store/store.ts";
import { buildStatus, displayIdentity, type StatusSource, summariseEntries, UsageCache } from "./status.ts";

const entry = (identity: string, kind: "object" | "list", bytes: number, count: number): EntryInfo => ({
  key: { identity, resource: "core~v1~pods", namespace: "default", name: "x" },
  kind,
  bytes,
  count,
  storedAt: 0,
});

Deno.test("a token hash is never shown; other identities only when shown", () => {
  const token = `token~${"ab12".repeat(16)}`;
  assertEquals(displayIdentity(token), "token~*");
  assertEquals(displayIdentity(`${token}~imp=0f0f`), "token~*~imp=0f0f");
  assertEquals(displayIdentity(`${token}~imp=0f0f`, false), "token~*");
  assertEquals(displayIdentity("cn~system:node:edge-1"), "cn~system:node:edge-1");
  assertEquals(displayIdentity("cn~system:node:edge-1", false), "cn~*");
  assertEquals(displayIdentity("anonymous", false), "anonymous~*");
});

Deno.test("usage is summed per displayed identity and in total", () => {
  const u = summariseEntries("sqlite", [
    entry("cn~kubelet", "list", 100, 3),
    entry("cn~kubelet", "object", 10, 1),
    entry(`token~${"f".repeat(64)}`, "object", 5, 1),
    entry(`token~${"e".repeat(64)}`, "object", 1, 1),
  ], 42);
  assertEquals(u, {
    backend: "sqlite",
    entries: 4,
    items: 6,
    bytes: 116,
    computedAtMs: 42,
    identities: [
      { identity: "cn~kubelet", identities: 1, entries: 2, items: 4, bytes: 110 },
      { identity: "token~*", identities: 2, entries: 2, items: 2, bytes: 6 },
    ],
  });
});

Deno.test("UsageCache: concurrent callers share one walk, reuse it within the TTL, keep the last on error", async () => {
  let walks = 0;
  let fail = false;
  const store = {
    backend: "file",
    entries: () => {
      walks++;
      return fail
        ? Promise.reject(new Error("disk gone"))
        : Promise.resolve([entry("anonymous", "object", 7, 1)]);
    },
  } as Pick<Store, "backend" | "entries">;
  const shared = new UsageCache(store, 60_000);
  const [a, b] = await Promise.all([shared.get(), shared.get()]);
  assertEquals([walks, a?.bytes, b?.bytes], [1, 7, 7]);
  await shared.get();
  assertEquals(walks, 1, "reused within the TTL");

  const fresh = new UsageCache(store, 0);
  await fresh.get();
  fail = true;
  const last = await fresh.get();
  assertEquals([last?.bytes, fresh.error], [7, "disk gone"]);
});

Deno.test("/status lists why the proxy is not healthy", async () => {
  const base: StatusSource = {
    version: "1.0.0",
    startedAtMs: Date.now() - 10_000,
    health: {
      online: true,
      endpoints: [{ url: "https://a:6443", healthy: true, consecutiveFailures: 0, lastProbeMs: 1 }],
      changedAt: 0,
      transitions: 0,
    },
    usage: new UsageCache({ backend: "sqlite", entries: () => Promise.resolve([]) }),
    queue: { depth: 0, bytes: 0, dropped: 0, written: 0, failed: 0 },
    heldWatches: 0,
    pairs: {
      status: () => [{ cn: "kubelet", certFile: "/k.pem", notAfter: new Date(Date.now() + 86_400_000) }],
    },
  };
  const ok = await buildStatus(base);
  assertEquals([ok.online, ok.healthy, ok.problems, ok.uptimeSeconds], [true, true, [], 10]);

  const bad = await buildStatus({
    ...base,
    health: {
      online: false,
      endpoints: [{
        url: "https://a:6443",
        healthy: false,
        consecutiveFailures: 2,
        lastProbeMs: 1,
        lastError: "connect ECONNREFUSED",
      }],
      changedAt: 0,
      transitions: 1,
    },
    pairs: {
      status: () => [
        { cn: "kubelet", certFile: "/k.pem", notAfter: new Date(Date.now() - 1000) },
        { cn: "", certFile: "/p.pem", problem: "no such file" },
      ],
    },
  });
  assertEquals(bad.healthy, false);
  assertEquals(bad.problems.map((p) => p.replace(/expired at \S+/, "expired at T")), [
    "offline: no upstream endpoint is healthy (serving reads from the cache)",
    "endpoint https://a:6443 unhealthy: connect ECONNREFUSED",
    "client certificate kubelet expired at T",
    "client certificate /p.pem: no such file",
  ]);
});
