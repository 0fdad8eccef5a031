/** Realistic ~2 KB pods (a Deployment's replica on an edge node) for the benchmarks. */

/** A Pod object as a controller would create it, with status as a kubelet would report it. */
export function benchPod(namespace: string, i: number): Record<string, unknown> {
  const name = `web-7d9f8b6c5d-${i.toString(36).padStart(5, "0")}`;
  const t = "2026-01-01T00:00:00Z";
  // Keys in the order the apiserver writes them (Go struct order), as the proxy meets them.
  return {
    kind: "Pod",
    apiVersion: "v1",
    metadata: {
      name,
      namespace,
      uid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
      resourceVersion: String(i + 1),
      creationTimestamp: t,
      labels: { app: "web", "pod-template-hash": "7d9f8b6c5d", tier: i % 2 ? "frontend" : "backend" },
      annotations: {
        "kubectl.kubernetes.io/restartedAt": t,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9102",
      },
      ownerReferences: [{
        apiVersion: "apps/v1",
        kind: "ReplicaSet",
        name: "web-7d9f8b6c5d",
        uid: "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec: {
      nodeName: "edge-1",
      serviceAccountName: "default",
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      schedulerName: "default-scheduler",
      containers: [{
        name: "web",
        image: "registry.example.com/team/web:1.27.3",
        imagePullPolicy: "IfNotPresent",
        ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }, {
          name: "metrics",
          containerPort: 9102,
          protocol: "TCP",
        }],
        env: [
          { name: "LOG_LEVEL", value: "info" },
          { name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
        ],
        resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "500m", memory: "256Mi" } },
        volumeMounts: [
          { name: "config", mountPath: "/etc/web", readOnly: true },
          {
            name: "kube-api-access-x7k2p",
            mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
            readOnly: true,
          },
        ],
        terminationMessagePath: "/dev/termination-log",
        terminationMessagePolicy: "File",
      }],
      volumes: [
        { name: "config", configMap: { name: "web-config", defaultMode: 420 } },
        {
          name: "kube-api-access-x7k2p",
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
            ],
          },
        },
      ],
    },
    status: {
      phase: "Running",
      conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
        type,
        status: "True",
        lastProbeTime: null,
        lastTransitionTime: t,
      })),
      hostIP: "192.168.50.11",
      podIP: `10.244.${(i >> 8) & 255}.${i & 255}`,
      startTime: t,
      qosClass: "Burstable",
      containerStatuses: [{
        name: "web",
        ready: true,
        started: true,
        restartCount: 0,
        image: "registry.example.com/team/web:1.27.3",
        imageID:
          "registry.example.com/team/web@sha256:3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a",
        containerID: `containerd://${(i * 2654435761 >>> 0).toString(16).padStart(8, "0").repeat(8)}`,
        state: { running: { startedAt: t } },
        lastState: {},
      }],
    },
  };
}
