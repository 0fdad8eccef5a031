/**
 * A tiny deployment controller: keeps `spec.replicas` Running pods per apps/v1 Deployment (named
 * `<deploy>-<hash>-<rand>`, on node edge-1) and reports the deployment's status.
 */
import { findResource } from "./resources.ts";
import { addDefaultTolerations } from "./pod_rules.ts";
import { runningPod } from "./seed.ts";
import { meta, type Obj, type ObjectStore, type StoreEvent } from "./store.ts";

const ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const DEPLOY = findResource("apps", "v1", "deployments")!;
const PODS = findResource("", "v1", "pods")!;

function hashOf(s: string, len: number): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  let out = "";
  for (let i = 0; i < len; i++) {
    out += ALPHABET[h % ALPHABET.length];
    h = Math.imul(h ^ (i + 7), 2654435761) >>> 0;
  }
  return out;
}

function rand(len: number): string {
  let out = "";
  for (let i = 0; i < len; i++) out += ALPHABET[Math.floor(Math.random() * ALPHABET.length)];
  return out;
}

// deno-lint-ignore no-explicit-any
type Any = any;

/** Starts the controller; returns a function that stops it. */
export function startDeploymentController(store: ObjectStore): () => void {
  let stopped = false;
  const pending = new Set<string>();

  const schedule = (ns: string, name: string) => {
    const k = `${ns}/${name}`;
    if (pending.has(k)) return;
    pending.add(k);
    queueMicrotask(() => {
      pending.delete(k);
      if (!stopped) reconcile(store, ns, name);
    });
  };

  const onEvent = (e: StoreEvent) => {
    const m = meta(e.obj);
    if (e.def === DEPLOY) {
      if (e.type === "DELETED") {
        queueMicrotask(() => {
          if (stopped) return;
          for (const p of owned(store, String(m.namespace), String(m.name))) {
            store.delete(PODS, String(meta(p).namespace), String(meta(p).name));
          }
        });
      } else if (e.type === "ADDED" || meta(e.old!).generation !== m.generation) {
        schedule(String(m.namespace), String(m.name));
      }
    } else if (e.def === PODS && e.type === "DELETED") {
      const owner = (m.labels as Record<string, string> | undefined)?.["edge.example.com/deployment"];
      if (owner) schedule(String(m.namespace), owner);
    }
  };
  const unsubscribe = store.subscribe(onEvent);
  return () => {
    stopped = true;
    unsubscribe();
  };
}

function owned(store: ObjectStore, ns: string, name: string): Obj[] {
  return store.list(PODS, ns).filter((p) =>
    (meta(p).labels as Record<string, string> | undefined)?.["edge.example.com/deployment"] === name
  );
}

function reconcile(store: ObjectStore, ns: string, name: string): void {
  const d = store.get(DEPLOY, ns, name) as Any;
  if (!d) return;
  const template = d.spec?.template ?? {};
  const hash = hashOf(JSON.stringify(template), 10);
  const want = d.spec?.replicas ?? 1;
  let pods = owned(store, ns, name);
  for (const p of pods) {
    if ((meta(p).labels as Record<string, string>)["pod-template-hash"] !== hash) {
      store.delete(PODS, ns, String(meta(p).name));
    }
  }
  pods = owned(store, ns, name);
  for (const p of pods.slice(want)) store.delete(PODS, ns, String(meta(p).name));
  for (let i = pods.length; i < want; i++) {
    const labels = { ...(template.metadata?.labels ?? {}), "pod-template-hash": hash };
    const pod = runningPod(ns, `${name}-${hash}-${rand(5)}`, labels, "edge-1", template.spec?.containers);
    (pod.metadata as Any).labels["edge.example.com/deployment"] = name;
    (pod.metadata as Any).ownerReferences = [{
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      name: `${name}-${hash}`,
      uid: d.metadata.uid,
      controller: true,
      blockOwnerDeletion: true,
    }];
    const spec = pod.spec as Any;
    for (const [k, v] of Object.entries(template.spec ?? {})) if (k !== "containers") spec[k] = v;
    spec.nodeName = "edge-1";
    addDefaultTolerations(pod); // a ReplicaSet's pods pass admission too
    store.create(PODS, pod);
  }
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const fresh = store.get(DEPLOY, ns, name) as Any;
  if (!fresh) return;
  fresh.status = {
    observedGeneration: fresh.metadata.generation,
    replicas: want,
    updatedReplicas: want,
    readyReplicas: want,
    availableReplicas: want,
    conditions: [
      {
        type: "Available",
        status: "True",
        reason: "MinimumReplicasAvailable",
        message: "Deployment has minimum availability.",
        lastUpdateTime: now,
        lastTransitionTime: now,
      },
      {
        type: "Progressing",
        status: "True",
        reason: "NewReplicaSetAvailable",
        message: `ReplicaSet "${name}-${hash}" has successfully progressed.`,
        lastUpdateTime: now,
        lastTransitionTime: now,
      },
    ],
  };
  if (want === 0) {
    delete fresh.status.readyReplicas;
    delete fresh.status.availableReplicas;
  }
  store.update(DEPLOY, fresh);
}
