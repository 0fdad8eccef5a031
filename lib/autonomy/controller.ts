/**
 * The autonomy controller: watches the opted-in nodes (by label selector) and every bound pod,
 * and keeps each pod on an opted-in node tolerating the unreachable / not-ready taints forever,
 * restoring the recorded seconds when its node opts out. One worker drains a de-duplicated queue
 * of pod keys; a PATCH that races another writer is re-read and re-planned.
 */
import { log } from "../log.ts";
import { Counter, Gauge, Registry } from "../admin/metrics.ts";
import { Informer, keyOf, type Obj } from "./informer.ts";
import { type KubeClient, KubeError } from "./kube_client.ts";
import { isActive, isCovered, type PatchOp, planCover, planRestore } from "./tolerations.ts";

export interface ControllerOptions {
  /** Label selector of the opted-in nodes. */
  nodeSelector: string;
}

const MAX_CONFLICT_RETRIES = 5;
const MAX_BACKOFF_MS = 30_000;

type PodMeta = { namespace?: string; name?: string };

function nodeOf(pod: Obj): string {
  return String(((pod.spec ?? {}) as { nodeName?: string }).nodeName ?? "");
}

export class AutonomyController {
  readonly registry = new Registry();
  readonly patches = this.registry.add(
    new Counter(
      "lite_apiserver_autonomy_pod_patches_total",
      "Pod PATCHes, by action (cover: seconds removed; restore: seconds put back) and result.",
    ),
  );
  readonly nodes: Informer;
  readonly pods: Informer;
  #queue = new Set<string>();
  #wake?: () => void;
  #stopped = false;
  #worker?: Promise<void>;
  #retryTimers = new Map<string, { timer: ReturnType<typeof setTimeout>; attempts: number }>();

  constructor(readonly client: KubeClient, readonly opts: ControllerOptions) {
    this.nodes = new Informer(client, "/api/v1/nodes", { labelSelector: opts.nodeSelector }, {
      upsert: (n, old) => {
        if (!old) this.#enqueueNode(String((n.metadata as PodMeta).name));
      },
      remove: (n) => this.#enqueueNode(String((n.metadata as PodMeta).name)),
    });
    // Every bound pod: restores need the pods of nodes that left the selector too.
    this.pods = new Informer(client, "/api/v1/pods", { fieldSelector: "spec.nodeName!=" }, {
      upsert: (p) => this.#enqueue(keyOf(p)),
      remove: (p) => this.#retryTimers.delete(keyOf(p)),
    });
    const r = this.registry;
    r.add(
      new Gauge(
        "lite_apiserver_autonomy_opted_in_nodes",
        "Nodes matching --node-selector.",
        () => this.nodes.items.size,
      ),
    );
    r.add(new Gauge("lite_apiserver_autonomy_pods", "Bound pods watched.", () => this.pods.items.size));
    r.add(
      new Gauge(
        "lite_apiserver_autonomy_covered_pods",
        "Active pods on opted-in nodes that tolerate the unreachable and not-ready taints forever.",
        () => this.#covered(),
      ),
    );
    r.add(
      new Gauge(
        "lite_apiserver_autonomy_relists_total",
        "Full lists, by resource (the first one, and after 410 Gone).",
        () => [[{ resource: "nodes" }, this.nodes.stats.relists], [
          { resource: "pods" },
          this.pods.stats.relists,
        ]],
        "counter",
      ),
    );
    r.add(
      new Gauge(
        "lite_apiserver_autonomy_watch_restarts_total",
        "Watches that ended and were resumed, by resource.",
        () => [[{ resource: "nodes" }, this.nodes.stats.watchRestarts], [
          { resource: "pods" },
          this.pods.stats.watchRestarts,
        ]],
        "counter",
      ),
    );
    r.add(
      new Gauge("lite_apiserver_autonomy_queue_depth", "Pods waiting to be checked.", () => this.#queue.size),
    );
  }

  #covered(): number {
    let n = 0;
    for (const p of this.pods.items.values()) {
      if (this.nodes.items.has(nodeOf(p)) && isActive(p) && isCovered(p)) n++;
    }
    return n;
  }

  /** Lists nodes and pods (throws when the apiserver cannot be reached), then watches and works. */
  async start(): Promise<void> {
    await this.nodes.list();
    await this.pods.list();
    log.info("autonomy: synced", {
      optedInNodes: this.nodes.items.size,
      pods: this.pods.items.size,
      selector: this.opts.nodeSelector,
    });
    this.nodes.start();
    this.pods.start();
    this.#worker = this.#work();
  }

  get ready(): boolean {
    return this.nodes.synced && this.pods.synced;
  }

  #enqueueNode(node: string): void {
    for (const [k, p] of this.pods.items) if (nodeOf(p) === node) this.#enqueue(k);
  }

  #enqueue(key: string): void {
    this.#queue.add(key);
    this.#wake?.();
  }

  async #work(): Promise<void> {
    while (!this.#stopped) {
      const next = this.#queue.values().next();
      if (next.done) {
        await new Promise<void>((r) => this.#wake = r);
        this.#wake = undefined;
        continue;
      }
      this.#queue.delete(next.value);
      try {
        await this.#reconcile(next.value);
        this.#retryTimers.delete(next.value);
      } catch (e) {
        if (this.#stopped) break;
        this.#retryLater(next.value, e as Error);
      }
    }
  }

  #retryLater(key: string, err: Error): void {
    const prev = this.#retryTimers.get(key);
    if (prev) clearTimeout(prev.timer);
    const attempts = (prev?.attempts ?? 0) + 1;
    const delay = Math.min(500 * 2 ** (attempts - 1), MAX_BACKOFF_MS);
    log.warn(
      "autonomy: patch failed, retrying",
      { pod: key, error: err.message, retryMs: delay },
      "autonomy.patch-failed",
    );
    const timer = setTimeout(() => {
      if (this.#retryTimers.get(key)?.timer === timer) this.#enqueue(key);
    }, delay);
    this.#retryTimers.set(key, { timer, attempts });
  }

  /** Brings one pod to what its node asks for. */
  async #reconcile(key: string): Promise<void> {
    let pod = this.pods.items.get(key);
    for (let attempt = 0; pod && attempt <= MAX_CONFLICT_RETRIES; attempt++) {
      if (!isActive(pod)) return;
      const node = nodeOf(pod);
      const action = this.nodes.items.has(node) ? "cover" : "restore";
      const ops = action === "cover" ? planCover(pod) : planRestore(pod);
      if (!ops) return;
      const m = pod.metadata as PodMeta;
      const path = `/api/v1/namespaces/${encodeURIComponent(m.namespace!)}/pods/${
        encodeURIComponent(m.name!)
      }`;
      try {
        const updated = await this.#patch(path, ops);
        this.pods.observe(updated);
        this.patches.inc({ action, result: "ok" });
        log.info(action === "cover" ? "autonomy: pod covered" : "autonomy: pod restored", { pod: key, node });
        return;
      } catch (e) {
        if (!(e instanceof KubeError)) {
          this.patches.inc({ action, result: "error" });
          throw e;
        }
        if (e.status === 404) {
          this.patches.inc({ action, result: "vanished" });
          log.info("autonomy: pod vanished before its patch", { pod: key });
          return;
        }
        // 409, or 422 (our `test` op failed: the real server words it only in the Status causes):
        // someone else changed the pod; read it again and re-plan, a bounded number of times.
        if (e.status !== 409 && e.status !== 422) {
          this.patches.inc({ action, result: "error" });
          throw e;
        }
        this.patches.inc({ action, result: "conflict" });
        try {
          pod = await this.client.json("GET", path);
          this.pods.observe(pod);
        } catch (g) {
          if (g instanceof KubeError && g.status === 404) {
            this.patches.inc({ action, result: "vanished" });
            return;
          }
          throw g;
        }
      }
    }
    if (pod) throw new Error(`still conflicting after ${MAX_CONFLICT_RETRIES} re-reads`);
  }

  #patch(path: string, ops: PatchOp[]): Promise<Obj> {
    return this.client.json("PATCH", path, {
      body: JSON.stringify(ops),
      contentType: "application/json-patch+json",
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    for (const { timer } of this.#retryTimers.values()) clearTimeout(timer);
    await Promise.all([this.nodes.stop(), this.pods.stop()]);
    await this.#worker;
  }
}
