/**
 * A client that only uses WatchList (`sendInitialEvents=true`, as newer client-go informers do)
 * never LISTs: its initial events must become the cached list, so that after the cloud is cut and
 * lite-apiserver is killed and restarted offline, both a watch-list and a plain LIST are answered
 * from the cache. Real process, both store backends.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  eventually,
  type HttpsClient,
  httpsClient,
  type LiteProcess,
  startCluster,
  startLite,
  WatchStream,
} from "./support/harness.ts";

type Obj = {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion: string;
    annotations?: Record<string, string>;
  };
};
type Ev = { type: string; object: Obj };

const PODS = "/api/v1/namespaces/default/pods";
const WATCH_LIST =
  "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";

/**
 * client-go's reflector with WatchList: one watch with sendInitialEvents; ADDED/MODIFIED/DELETED
 * kept in a store; synced at the BOOKMARK annotated k8s.io/initial-events-end, whose version is the
 * last synced one; later bookmarks only move the version.
 */
class WatchListReflector {
  readonly items = new Map<string, Obj>();
  rv = "";
  synced = false;
  #stream?: WatchStream<Ev>;
  #applied = 0;

  constructor(readonly client: HttpsClient, readonly path: string) {}

  async start(): Promise<void> {
    const res = await this.client.request(`${this.path}?${WATCH_LIST}`);
    if (res.status !== 200) throw new Error(`watch-list ${this.path}: ${res.status} ${await res.text()}`);
    this.#stream = new WatchStream<Ev>(res.body!);
    await this.until(() => this.synced, "the initial-events-end bookmark");
  }

  /** Reads and applies events until `done()` holds; fails if the stream ends first. */
  async until(done: () => boolean, what: string): Promise<void> {
    const ok = await this.#stream!.until((evs) => {
      for (; this.#applied < evs.length; this.#applied++) this.#apply(evs[this.#applied]);
      return done();
    }, what);
    assert(ok, `the watch ended before ${what}`);
  }

  #apply(ev: Ev): void {
    const m = ev.object.metadata;
    if (ev.type === "ERROR") throw new Error(`watch ERROR: ${JSON.stringify(ev.object)}`);
    if (ev.type === "BOOKMARK") {
      if (m.annotations?.["k8s.io/initial-events-end"] === "true") this.synced = true;
    } else if (ev.type === "DELETED") this.items.delete(`${m.namespace}/${m.name}`);
    else this.items.set(`${m.namespace}/${m.name}`, ev.object);
    this.rv = m.resourceVersion;
  }

  names(): string[] {
    return [...this.items.values()].map((o) => o.metadata.name).sort();
  }

  stop(): Promise<void> {
    return this.#stream?.cancel() ?? Promise.resolve();
  }
}

async function metric(lite: LiteProcess & { adminUrl?: string }, name: string): Promise<number> {
  const text = await (await fetch(`${lite.adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line ? Number(line.split(" ").at(-1)) : NaN;
}

for (const backend of ["sqlite", "file"] as const) {
  Deno.test(`watch-list only client: offline after kill -9, watch-list and LIST from the cache (${backend})`, async () => {
    const cluster = await startCluster();
    let lite = await startLite(cluster, { backend });
    const cacheDir = lite.cacheDir;
    const clients: HttpsClient[] = [];
    const client = () => {
      const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
      clients.push(c);
      return c;
    };
    try {
      // Online: the initial events, then a pod added and one deleted while the watch runs.
      const online = new WatchListReflector(client(), PODS);
      await online.start();
      const initial = online.names();
      assert(initial.length >= 2, `seeded pods: ${initial}`);
      cluster.apiserver.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "wl-added", namespace: "default" },
        spec: { containers: [{ name: "c", image: "pause:3.9" }] },
      });
      cluster.apiserver.remove("v1", "Pod", "default", initial[0]);
      await online.until(
        () => online.items.has("default/wl-added") && !online.items.has(`default/${initial[0]}`),
        "the ADDED wl-added and DELETED events",
      );
      const expected = online.names();
      const seenRv = Number(online.rv);
      await online.stop();
      // The client only ever watched: no LIST of the collection reached the cloud.
      const upstream = cluster.apiserver.requests.filter((r) => r.path === PODS);
      assert(
        upstream.length > 0 && upstream.every((r) => /(^|&)watch=1(&|$)/.test(r.query)),
        JSON.stringify(upstream),
      );
      // Written to the store before the kill (the write queue has nothing left).
      await eventually(
        async () => (await metric(lite, "lite_apiserver_write_queue_bytes")) === 0,
        "an empty write queue",
      );

      await cluster.apiserver.setFault("refuse");
      await lite.kill("SIGKILL");
      for (const c of clients.splice(0)) c.close();
      lite = await startLite(cluster, { backend, cacheDir });

      // Offline: a watch-list gets the cached items, then the end bookmark.
      const offline = new WatchListReflector(client(), PODS);
      await lite.waitForLine(/upstream unreachable: offline/);
      await offline.start();
      assertEquals(offline.names(), expected);
      assert(Number(offline.rv) >= seenRv, `offline version ${offline.rv} < ${seenRv}`);
      await offline.stop();

      // And a plain LIST, from the same snapshot, at the same version.
      const list = await client().json(PODS);
      assertEquals(list.status, 200, JSON.stringify(list.body));
      assertEquals(list.headers.get("x-lite-apiserver-source"), "cache");
      assertEquals((list.body.items as Obj[]).map((o) => o.metadata.name).sort(), expected);
      assertEquals(list.body.kind, "PodList");
      assertEquals((list.body.metadata as { resourceVersion: string }).resourceVersion, offline.rv);
    } finally {
      for (const c of clients) c.close();
      await lite.kill();
      await cluster.close();
      await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    }
  });
}
