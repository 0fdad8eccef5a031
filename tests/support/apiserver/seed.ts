/**
 * The small realistic cluster the fake apiserver starts with.
 */
import { findByKind } from "./resources.ts";
import type { ObjectStore } from "./store.ts";
import { type ApiserverAddresses, kubernetesServiceObjects } from "./kubernetes_service.ts";

/** Where the seeded cluster's apiserver says it is (the kubernetes Service's endpoints). */
export const APISERVER_ADDRESSES: ApiserverAddresses = { ips: ["192.168.50.1"], port: 6443 };

type Obj = Record<string, unknown>;

const CA_DATA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

function ns(name: string): Obj {
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, labels: { "kubernetes.io/metadata.name": name } },
    spec: { finalizers: ["kubernetes"] },
    status: { phase: "Active" },
  };
}

function node(name: string, ip: string): Obj {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/edge": "",
      },
    },
    spec: { podCIDR: "10.244.0.0/24" },
    status: {
      addresses: [{ type: "InternalIP", address: ip }, { type: "Hostname", address: name }],
      capacity: { cpu: "2", memory: "4026524Ki", pods: "110" },
      allocatable: { cpu: "2", memory: "3924124Ki", pods: "110" },
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "KubeletReady",
        message: "kubelet is posting ready status",
        lastHeartbeatTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
      nodeInfo: {
        kubeletVersion: "v1.31.0",
        kubeProxyVersion: "v1.31.0",
        containerRuntimeVersion: "containerd://1.7.20",
        operatingSystem: "linux",
        architecture: "amd64",
        osImage: "Debian GNU/Linux 12 (bookworm)",
        kernelVersion: "6.1.0-23-amd64",
      },
    },
  };
}

let podIp = 10;

/** A Running pod with one ready container. */
export function runningPod(
  namespace: string,
  name: string,
  labels: Record<string, string>,
  nodeName: string,
  containers: Obj[] = [{ name: "main", image: "registry.k8s.io/pause:3.9" }],
): Obj {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels },
    spec: {
      containers: containers.map((c) => ({
        terminationMessagePath: "/dev/termination-log",
        terminationMessagePolicy: "File",
        imagePullPolicy: "IfNotPresent",
        resources: {},
        ...c,
      })),
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "default",
      nodeName,
      schedulerName: "default-scheduler",
    },
    status: {
      phase: "Running",
      conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }],
      hostIP: nodeName === "edge-2" ? "192.168.50.12" : "192.168.50.11",
      podIP: `10.244.0.${podIp++ % 250}`,
      startTime: now,
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: "",
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: now } },
      })),
    },
  };
}

/** The objects of the seeded cluster, in creation order. */
export function seedObjects(): Obj[] {
  const objs: Obj[] = [];
  for (const n of ["default", "kube-system", "kube-node-lease", "kube-public", "edge-apps"]) {
    objs.push(ns(n));
  }
  objs.push(node("edge-1", "192.168.50.11"), node("edge-2", "192.168.50.12"));
  for (const n of ["default", "kube-system", "kube-node-lease", "kube-public", "edge-apps"]) {
    objs.push({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default", namespace: n } });
    objs.push({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kube-root-ca.crt", namespace: n },
      data: { "ca.crt": CA_DATA },
    });
  }
  objs.push(
    runningPod("default", "nginx-1", { app: "nginx", tier: "web" }, "edge-1", [{
      name: "nginx",
      image: "nginx:1.27",
    }]),
    runningPod("default", "nginx-2", { app: "nginx", tier: "web" }, "edge-2", [{
      name: "nginx",
      image: "nginx:1.27",
    }]),
    runningPod("default", "redis-0", { app: "redis", tier: "cache" }, "edge-1", [{
      name: "redis",
      image: "redis:7",
    }]),
    runningPod("kube-system", "kube-proxy-edge-1", { "k8s-app": "kube-proxy" }, "edge-1", [
      { name: "kube-proxy", image: "registry.k8s.io/kube-proxy:v1.31.0" },
    ]),
    runningPod("kube-system", "coredns-6f6b679f8f-x2kqz", { "k8s-app": "kube-dns" }, "edge-1", [
      { name: "coredns", image: "registry.k8s.io/coredns/coredns:v1.11.1" },
    ]),
    runningPod("edge-apps", "sensor-reader", { app: "sensor" }, "edge-1", [
      { name: "reader", image: "example.com/sensor-reader:1.0" },
    ]),
    // default/kubernetes Service, Endpoints and EndpointSlice (kubernetes_service.ts keeps them current).
    ...kubernetesServiceObjects(APISERVER_ADDRESSES),
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "app-config", namespace: "default", labels: { app: "nginx" } },
      data: { "log.level": "info", "feature.x": "on" },
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kube-proxy", namespace: "kube-system", labels: { app: "kube-proxy" } },
      data: { "config.conf": "mode: iptables\n" },
    },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "db-password", namespace: "default" },
      type: "Opaque",
      data: { password: btoa("s3cr3t") },
    },
    {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "edge-1", namespace: "kube-node-lease" },
      spec: {
        holderIdentity: "edge-1",
        leaseDurationSeconds: 40,
        renewTime: new Date().toISOString().replace("Z", "000Z"),
      },
    },
    {
      apiVersion: "edge.example.com/v1",
      kind: "Widget",
      metadata: { name: "w1", namespace: "default", labels: { color: "blue" } },
      spec: { size: 3, color: "blue" },
    },
  );
  return objs;
}

/** Fills a store with the seeded cluster. */
export function seed(store: ObjectStore): void {
  for (const o of seedObjects()) {
    const def = findByKind(String(o.apiVersion), String(o.kind))!;
    store.create(def, o);
  }
}
