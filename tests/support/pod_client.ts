/**
 * A pod-style API client, as in-cluster config makes one: its ServiceAccount token, the cluster CA,
 * and the server name `kubernetes.default.svc`, resolved here to the node address lite-apiserver
 * listens on (where kube-proxy would DNAT the Service's ClusterIP). It is curl, a real client.
 */
export interface PodAnswer {
  /** curl's exit code. */
  code: number;
  stderr: string;
  status: number;
  /** "cache" when lite-apiserver answered from its cache, else "upstream". */
  source: string;
  body: string;
}

export async function podRequest(
  opts: { nodeIp: string; port: number; caFile: string; token?: string },
  path: string,
): Promise<PodAnswer> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "20",
      "--resolve",
      `kubernetes.default.svc:${opts.port}:${opts.nodeIp}`,
      "--cacert",
      opts.caFile,
      ...(opts.token ? ["-H", `Authorization: Bearer ${opts.token}`] : []),
      "-D",
      "-",
      `https://kubernetes.default.svc:${opts.port}${path}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const split = text.indexOf("\r\n\r\n");
  const head = split >= 0 ? text.slice(0, split) : text;
  return {
    code: out.code,
    stderr: new TextDecoder().decode(out.stderr),
    status: Number(/^HTTP\/\S+ (\d+)/.exec(head)?.[1] ?? 0),
    source: /x-lite-apiserver-source: (\S+)/i.exec(head)?.[1] ?? "upstream",
    body: split >= 0 ? text.slice(split + 4) : "",
  };
}

/** The pod's ServiceAccount: its token is in the harness's TOKENS (the simulated apiserver accepts it). */
export const POD_SERVICE_ACCOUNT = {
  token: "flannel-sa-token",
  user: "system:serviceaccount:kube-flannel:flannel",
};

/**
 * What a CNI agent's ClusterRole grants in a real cluster (reads of nodes, pods, services and their
 * endpoints), bound to the pod's ServiceAccount: the simulated apiserver enforces RBAC for them.
 */
export function grantPodServiceAccount(apiserver: { create(obj: Record<string, unknown>): unknown }): void {
  const read = ["get", "list", "watch"];
  apiserver.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "cni-agent" },
    rules: [
      { apiGroups: [""], resources: ["nodes", "pods", "services", "endpoints"], verbs: read },
      { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: read },
    ],
  });
  apiserver.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "cni-agent" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cni-agent" },
    subjects: [{ kind: "ServiceAccount", name: "flannel", namespace: "kube-flannel" }],
  });
}
