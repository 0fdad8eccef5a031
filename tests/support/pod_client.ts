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
