/**
 * Real client libraries through lite-apiserver, with the simulated apiserver's answers cut like a
 * real server's (head and body split, then dribbled bodies, then a Nagle-like late last segment):
 * an informer from @kubernetes/client-node (under Node, client certificate) and a list+watch
 * reflector with Debian's python3-kubernetes (bearer token), both from kubeconfigs. They see the
 * initial list and changes made in the cloud, keep working across a cut (their cache intact, LISTs
 * answered from lite-apiserver's cache) and converge on the cloud's state after recovery. The
 * libraries are installed by scripts/install-test-clients (run from here; a no-op once installed,
 * and scripts/test runs it too).
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type ClientEvent, type ClientProcess, runBounded, startClientProcess } from "./support/clients.ts";
import { httpsClient, ROOT, startCluster, startLite, writeKubeconfig } from "./support/harness.ts";

const DRIVERS = `${ROOT}/tests/support/clients`;

/** Runs scripts/install-test-clients (a no-op once installed); returns client-node's entry point. */
async function installClients(): Promise<string> {
  const r = await runBounded(
    `${ROOT}/scripts/install-test-clients`,
    [],
    "scripts/install-test-clients",
    300_000,
  );
  if (r.code !== 0) throw new Error(`scripts/install-test-clients failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").pop()!;
}

type Item = { name: string; data: string };

/**
 * Two missed probes in a row (not the harness's one) before going offline: on a loaded 2-core
 * machine one 500 ms probe can miss, and an offline moment with nothing cached yet is a 503.
 */
const STEADY = ["--health-check-failures", "2"];

Deno.test({
  name: "client-node informer and python3-kubernetes reflector: online, across a cut, after recovery",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const entry = await installClients();
    await using cluster = await startCluster({ wire: "split" });
    const api = cluster.apiserver;
    const cm = (name: string, v: string) => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, namespace: "default" },
      data: { v },
    });
    api.create(cm("app", "1"));
    const admin = httpsClient(api.directUrl, cluster.pki.caPem, { token: "admin-token" });
    /** The cloud's configmaps in default, as the clients print them. */
    const cloud = async (): Promise<Item[]> => {
      const r = await admin.json("/api/v1/namespaces/default/configmaps");
      const items = r.body.items as { metadata: { name: string }; data?: Record<string, string> }[];
      return items.map((o) => ({ name: o.metadata.name, data: JSON.stringify(o.data ?? {}) }))
        .sort((a, b) => a.name.localeCompare(b.name));
    };
    await using lite = await startLite(cluster, { extra: STEADY });
    const clients: { name: string; p: ClientProcess }[] = [];
    try {
      const kcNode = await writeKubeconfig(
        cluster.dir,
        "node",
        lite.url,
        cluster.pki.caCert,
        cluster.kubelet,
      );
      const kcPy = await writeKubeconfig(cluster.dir, "python", lite.url, cluster.pki.caCert, {
        token: "reader-token",
      });
      clients.push(
        {
          name: "client-node",
          p: startClientProcess("client-node informer", "node", [
            `${DRIVERS}/informer_node.mjs`,
            entry,
            kcNode,
          ]),
        },
        {
          name: "python3-kubernetes",
          p: startClientProcess("python3-kubernetes reflector", "/usr/bin/python3", [
            `${DRIVERS}/informer_python.py`,
            kcPy,
          ]),
        },
      );
      /** Waits until a client's cache equals `want` (asking for its cache after each event). */
      const converges = async (c: { name: string; p: ClientProcess }, want: Item[], what: string) => {
        const deadline = Date.now() + 30_000;
        let last: ClientEvent | undefined;
        while (Date.now() < deadline) {
          last = await c.p.ask("dump", `${c.name} cache (${what})`);
          if (JSON.stringify(last.items) === JSON.stringify(want)) return;
          // Wait for the client's next event (a bounded wait) before asking again.
          const from = c.p.events.indexOf(last) + 1; // events after the dump, even in the same read
          await c.p.waitFor(
            (e) => e.event !== "dump",
            "a next event",
            Math.max(1, deadline - Date.now()),
            from,
          )
            .catch(() => {});
        }
        const tail = c.p.events.filter((e) => e.event !== "dump").slice(-6).map((e) =>
          JSON.stringify(e).slice(0, 200)
        );
        assertEquals(last?.items, want, `${c.name}: cache ${what}; its last events:\n${tail.join("\n")}`);
      };

      await t.step("the initial list", async () => {
        const want = await cloud();
        for (const c of clients) await converges(c, want, "after the initial list");
      });

      await t.step("changes made in the cloud arrive through the watch", async () => {
        api.setWire("dribble");
        api.create(cm("c1", "1"));
        const app = api.get("v1", "ConfigMap", "default", "app")!;
        api.update({ ...app, data: { v: "2" } });
        const want = await cloud();
        for (const c of clients) await converges(c, want, "after changes in the cloud");
      });

      const beforeCut = await cloud();
      await t.step(
        "across a cut: the cache stays whole and LISTs are answered from lite-apiserver's cache",
        async () => {
          const from = lite.lines.length;
          await api.setFault("blackhole");
          await lite.waitForLine(/upstream unreachable: offline/, 20_000, from);
          for (const c of clients) {
            const list = await c.p.ask("list", `${c.name} LIST while offline`);
            assertEquals(list.error, undefined, `${c.name}: LIST offline`);
            assertEquals(list.names, beforeCut.map((i) => i.name), `${c.name}: LIST offline`);
            await converges(c, beforeCut, "while offline");
          }
          // The cloud moves on while the node is cut off.
          api.create(cm("c2", "1"));
          const app = api.get("v1", "ConfigMap", "default", "app")!;
          api.update({ ...app, data: { v: "3" } });
          api.remove("v1", "ConfigMap", "default", "c1");
          for (const c of clients) {
            await converges(c, beforeCut, "while offline, after cloud changes it cannot see");
          }
        },
      );

      await t.step("after recovery both converge on the cloud's state", async () => {
        const from = lite.lines.length;
        api.setWire("nagle");
        await api.setFault("none");
        await lite.waitForLine(/upstream reachable again/, 20_000, from);
        const want = await cloud();
        for (const c of clients) {
          await converges(c, want, "after recovery");
        }
        api.create(cm("c3", "1"));
        const after = await cloud();
        for (const c of clients) await converges(c, after, "after a change made after recovery");
      });
    } finally {
      for (const c of clients) await c.p.kill();
      admin.close();
    }
  },
});
