/**
 * The `default/kubernetes` Service, Endpoints and EndpointSlice as a real cluster has them, kept
 * current the way the apiserver's endpoint reconciler keeps them: whatever changes or deletes them,
 * they are put back to the apiserver addresses (which a test may change with `setAddresses`).
 */
import { findResource } from "./resources.ts";
import { meta, type Obj, type ObjectStore } from "./store.ts";

const SERVICES = findResource("", "v1", "services")!;
const ENDPOINTS = findResource("", "v1", "endpoints")!;
const SLICES = findResource("discovery.k8s.io", "v1", "endpointslices")!;

export const KUBERNETES_CLUSTER_IP = "10.96.0.1";

/** Where the apiserver says it is: addresses and port (a real cluster: its advertise address, 6443). */
export interface ApiserverAddresses {
  ips: string[];
  port: number;
}

function service(): Obj {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: "kubernetes",
      namespace: "default",
      labels: { component: "apiserver", provider: "kubernetes" },
    },
    spec: {
      type: "ClusterIP",
      clusterIP: KUBERNETES_CLUSTER_IP,
      clusterIPs: [KUBERNETES_CLUSTER_IP],
      ipFamilies: ["IPv4"],
      ipFamilyPolicy: "SingleStack",
      internalTrafficPolicy: "Cluster",
      ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: 6443 }],
      sessionAffinity: "None",
    },
    status: { loadBalancer: {} },
  };
}

function endpoints(a: ApiserverAddresses): Obj {
  return {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: {
      name: "kubernetes",
      namespace: "default",
      labels: { "endpointslice.kubernetes.io/skip-mirror": "true" },
    },
    subsets: [{
      addresses: a.ips.map((ip) => ({ ip })),
      ports: [{ name: "https", port: a.port, protocol: "TCP" }],
    }],
  };
}

function slice(a: ApiserverAddresses): Obj {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: "kubernetes",
      namespace: "default",
      labels: { "kubernetes.io/service-name": "kubernetes" },
    },
    addressType: "IPv4",
    endpoints: a.ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: "https", port: a.port, protocol: "TCP" }],
  };
}

/** The seeded objects (Service, Endpoints, EndpointSlice). */
export function kubernetesServiceObjects(a: ApiserverAddresses): Obj[] {
  return [service(), endpoints(a), slice(a)];
}

const content = (o: Obj | undefined) => {
  if (!o) return "";
  const { metadata: _m, ...rest } = o;
  return JSON.stringify({ ...rest, labels: meta(o).labels });
};

/**
 * Keeps the Endpoints and EndpointSlice equal to `current` addresses. Returns `setAddresses` (a
 * test hook: the apiserver moved) and a stop function.
 */
export function startKubernetesEndpointsReconciler(
  store: ObjectStore,
  initial: ApiserverAddresses,
): { setAddresses(a: ApiserverAddresses): void; stop(): void } {
  let current = initial;
  let stopped = false;
  let pending = false;
  const reconcile = () => {
    pending = false;
    if (stopped) return;
    for (const [def, want] of [[ENDPOINTS, endpoints(current)], [SLICES, slice(current)]] as const) {
      const have = store.get(def, "default", "kubernetes");
      if (!have) store.create(def, want);
      else if (content(have) !== content({ ...want, metadata: meta(have) })) {
        store.update(def, { ...want, metadata: { ...meta(have), labels: meta(want).labels } });
      }
    }
  };
  const schedule = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(reconcile);
  };
  const unsubscribe = store.subscribe((e) => {
    if (
      (e.def === ENDPOINTS || e.def === SLICES) && meta(e.obj).namespace === "default" &&
      meta(e.obj).name === "kubernetes"
    ) {
      schedule();
    }
  });
  // The Service itself: only the reconciler of a real apiserver re-creates it; here it is seeded.
  if (!store.get(SERVICES, "default", "kubernetes")) store.create(SERVICES, service());
  reconcile();
  return {
    setAddresses(a) {
      current = a;
      reconcile();
    },
    stop() {
      stopped = true;
      unsubscribe();
    },
  };
}
