/**
 * A watch survives a cut: a running `kubectl get -w` (a server-side Table watch) is held from the
 * cache when the cloud goes away, does not exit, and shows the changes after recovery; a new
 * `kubectl get -w` started offline is held too. Real kubectl 1.27 and 1.33.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  eventually,
  httpsClient,
  kubectlStream,
  startCluster,
  startLite,
  WatchStream,
  writeKubeconfig,
} from "./support/harness.ts";

/** Collects a child's stdout and stderr; `exited` is set when it ends. */
function follow(child: Deno.ChildProcess) {
  const out = { text: "", err: "", exited: false, code: -1 };
  const pump = async (s: ReadableStream<Uint8Array>, key: "text" | "err") => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) out[key] += chunk;
  };
  Promise.all([pump(child.stdout, "text"), pump(child.stderr, "err")]).catch(() => {});
  child.status.then((s) => {
    out.exited = true;
    out.code = s.code;
  });
  return out;
}

function pod(name: string) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", labels: { app: "cut" } },
    spec: { nodeName: "edge-1", containers: [{ name: "c", image: "busybox" }] },
  };
}

async function heldWatches(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return Number(/^lite_apiserver_offline_watches_held (\d+)/m.exec(text)?.[1] ?? "NaN");
}

for (const version of ["1.27", "1.33"]) {
  Deno.test(`kubectl ${version} get -w across a cut and a recovery`, async () => {
    const cluster = await startCluster();
    const lite = await startLite(cluster);
    const kc = await writeKubeconfig(cluster.dir, "kubelet", lite.url, cluster.pki.caCert, cluster.kubelet);
    const children: Deno.ChildProcess[] = [];
    try {
      const spawn = (args: string[]) => {
        const c = kubectlStream(version, kc, args);
        children.push(c);
        return follow(c);
      };
      const running = spawn(["get", "pods", "-w"]);
      await eventually(() => running.text.includes("nginx-2"), "the running watch's first listing");
      // The watch is established upstream before the cut.
      await eventually(
        () =>
          cluster.apiserver.requests.some((r) =>
            r.path.endsWith("/pods") && /watch=/.test(r.query) && r.status === 200
          ),
        "the watch answered by the cloud",
      );

      const from = lite.lines.length;
      await cluster.apiserver.setFault("blackhole");
      await lite.waitForLine(/upstream unreachable: offline/, 30_000, from);
      await lite.waitForLine(/upstream watch cut: holding the client's watch/, 10_000, from);

      // A new `kubectl get -w` while offline: listed from the cache and held (not a 503).
      const fresh = spawn(["get", "pods", "-w"]);
      await eventually(() => fresh.text.includes("nginx-2"), "the offline watch's listing from the cache");
      await eventually(async () => await heldWatches(lite.adminUrl!) === 2, "both watches held", 15_000);
      assertEquals(
        [running.exited, fresh.exited],
        [false, false],
        `still running: ${running.err}${fresh.err}`,
      );

      // Changes in the cloud during the outage and after it reach both watches after recovery.
      cluster.apiserver.create(pod("made-in-outage"));
      const back = lite.lines.length;
      await cluster.apiserver.setFault("none");
      await lite.waitForLine(/upstream reachable again/, 30_000, back);
      await eventually(
        () => running.text.includes("made-in-outage") && fresh.text.includes("made-in-outage"),
        "the outage's change on both watches",
      );
      cluster.apiserver.create(pod("after-recovery"));
      await eventually(
        () => running.text.includes("after-recovery") && fresh.text.includes("after-recovery"),
        "a change after recovery on both watches",
      );
      assertEquals(
        [running.exited, fresh.exited],
        [false, false],
        `still running: ${running.err}${fresh.err}`,
      );
      assert(!/error/i.test(running.err + fresh.err), running.err + fresh.err);
      console.log(`[kubectl ${version}] running watch output:\n${running.text}`);
    } finally {
      for (const c of children) {
        try {
          c.kill();
        } catch { /* already exited */ }
      }
      await lite.kill();
      await cluster.close();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  });
}

type Event = { type: string; object: { metadata: { name?: string; resourceVersion: string } } };

for (const mode of ["blackhole", "refuse"] as const) {
  Deno.test(`a relayed watch cut (${mode}${mode === "refuse" ? ", before any event" : ""}) is held: BOOKMARKs at the last version, nothing invented, ends at timeoutSeconds`, async () => {
    // The cloud sends no BOOKMARKs of its own here: every BOOKMARK seen comes from the held watch.
    const cluster = await startCluster({ bookmarkIntervalMs: 600_000 });
    const lite = await startLite(cluster);
    const client = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      const list = await client.json("/api/v1/namespaces/default/pods");
      const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
      const res = await client.request(
        `/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=8&resourceVersion=${rv}`,
      );
      assertEquals(res.status, 200);
      const w = new WatchStream<Event>(res.body!);
      const events = w.events;
      let lastRv = rv;
      // Blackhole: a change is relayed before the cut; refuse: a quiet watch, cut before any event.
      if (mode === "blackhole") {
        const p = cluster.apiserver.get("v1", "Pod", "default", "nginx-1") as Event["object"];
        cluster.apiserver.update({ ...p, metadata: { ...p.metadata, labels: { changed: "yes" } } });
        await w.until((evs) => evs.some((e) => e.type === "MODIFIED"), "the MODIFIED event before the cut");
        lastRv = events.at(-1)!.object.metadata.resourceVersion;
      } else {
        await eventually(
          () => cluster.apiserver.requests.some((r) => /watch=1/.test(r.query) && r.status === 200),
          "the watch answered by the cloud",
        );
      }

      const from = lite.lines.length;
      await cluster.apiserver.setFault(mode);
      await lite.waitForLine(/upstream watch cut: holding the client's watch/, 15_000, from);
      // Held: a BOOKMARK at the version the client last saw, then the end at timeoutSeconds.
      const before = events.length;
      const held = await w.until(
        (evs) => evs.slice(before).some((e) => e.type === "BOOKMARK"),
        "a BOOKMARK on the held watch",
      );
      assertEquals(held, true, "held, not ended, at the cut");
      const bookmark = events.slice(before).find((e) => e.type === "BOOKMARK")!;
      assertEquals(bookmark.object.metadata.resourceVersion, lastRv);
      await w.until(() => false, "the end at timeoutSeconds=8", 20_000);
      assertEquals(w.ended, true, "ended at timeoutSeconds");
      assertEquals(events.slice(before).filter((e) => e.type !== "BOOKMARK"), [], "nothing invented");
    } finally {
      client.close();
      await lite.kill();
      await cluster.close();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  });
}
