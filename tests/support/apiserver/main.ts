/**
 * Standalone fake kube-apiserver for the demo and benchmarks.
 *
 *   deno run -A tests/support/apiserver/main.ts --ca-file ca.crt --tls-cert-file s.crt \
 *     --tls-private-key-file s.key [--ca-key-file ca.key] [--port 0] [--control-port 0] \
 *     [--token TOKEN=user[:group,group]]... [--no-seed] [--toleration-second-ms MS]
 *
 * Prints `fake-apiserver listening on https://127.0.0.1:PORT control on http://127.0.0.1:CPORT`.
 * Control (plain HTTP on 127.0.0.1): POST /fault/none|blackhole|refuse, POST /objects (create or
 * update a JSON object), DELETE /objects?apiVersion=&kind=&namespace=&name=, GET /requests,
 * POST /compact, POST /nodes/NAME/cut|restore (node lifecycle: unreachable taint and evictions),
 * POST /kubernetes-endpoints (`{"ips": [...], "port": N}`: the apiserver moved).
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { startFakeApiServer } from "./mod.ts";

function parseArgs(args: string[]) {
  const flags: Record<string, string> = {};
  const tokens: Record<string, { user: string; groups?: string[] }> = {};
  let seed = true;
  for (let i = 0; i < args.length; i++) {
    let a = args[i];
    if (a === "--no-seed") {
      seed = false;
      continue;
    }
    let v: string | undefined;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    } else v = args[++i];
    if (v === undefined) throw new Error(`missing value for ${a}`);
    if (a === "--token") {
      const m = v.match(/^([^=]+)=([^:]+)(?::(.*))?$/);
      if (!m) throw new Error(`bad --token ${v}: want TOKEN=user[:group,group]`);
      tokens[m[1]] = { user: m[2], groups: m[3] ? m[3].split(",") : [] };
    } else flags[a.replace(/^--/, "")] = v;
  }
  for (const req of ["ca-file", "tls-cert-file", "tls-private-key-file"]) {
    if (!flags[req]) throw new Error(`--${req} is required`);
  }
  return { flags, tokens, seed };
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs(Deno.args);
  } catch (e) {
    console.error(`fake-apiserver: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const { flags, tokens, seed } = parsed;
  const api = await startFakeApiServer({
    caCert: flags["ca-file"],
    caKey: flags["ca-key-file"],
    certFile: flags["tls-cert-file"],
    keyFile: flags["tls-private-key-file"],
    port: Number(flags.port ?? 0),
    tokens,
    seed,
    bookmarkIntervalMs: flags["bookmark-interval-ms"] ? Number(flags["bookmark-interval-ms"]) : undefined,
    tolerationSecondMs: flags["toleration-second-ms"] ? Number(flags["toleration-second-ms"]) : undefined,
  });

  const control = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://control");
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      const fault = url.pathname.match(/^\/fault\/(none|blackhole|refuse)$/);
      if (req.method === "POST" && fault) {
        await api.setFault(fault[1] as "none" | "blackhole" | "refuse");
        return reply(200, { fault: fault[1] });
      }
      if (req.method === "POST" && url.pathname === "/objects") {
        let text = "";
        for await (const c of req) text += new TextDecoder().decode(c as Uint8Array);
        const obj = JSON.parse(text);
        const m = obj.metadata ?? {};
        const exists = api.get(obj.apiVersion, obj.kind, m.namespace, m.name);
        return reply(exists ? 200 : 201, exists ? api.update(obj) : api.create(obj));
      }
      if (req.method === "DELETE" && url.pathname === "/objects") {
        const p = url.searchParams;
        api.remove(
          p.get("apiVersion") ?? "",
          p.get("kind") ?? "",
          p.get("namespace") || undefined,
          p.get("name") ?? "",
        );
        return reply(200, { deleted: true });
      }
      if (req.method === "GET" && url.pathname === "/requests") return reply(200, api.requests);
      if (req.method === "POST" && url.pathname === "/kubernetes-endpoints") {
        let text = "";
        for await (const c of req) text += new TextDecoder().decode(c as Uint8Array);
        const a = JSON.parse(text);
        api.setKubernetesEndpoints({ ips: a.ips, port: Number(a.port ?? 6443) });
        return reply(200, a);
      }
      const node = url.pathname.match(/^\/nodes\/([^/]+)\/(cut|restore)$/);
      if (req.method === "POST" && node) {
        if (node[2] === "cut") api.cutNode(node[1]);
        else api.restoreNode(node[1]);
        return reply(200, { node: node[1], [node[2]]: true });
      }
      if (req.method === "GET" && url.pathname === "/evictions") return reply(200, api.evictions);
      if (req.method === "POST" && url.pathname === "/compact") {
        api.compact();
        return reply(200, { compacted: true });
      }
      reply(404, { error: "not found" });
    } catch (e) {
      reply(400, { error: (e as Error).message });
    }
  });
  await new Promise<void>((r) => control.listen(Number(flags["control-port"] ?? 0), "127.0.0.1", r));
  const cport = (control.address() as AddressInfo).port;
  console.log(`fake-apiserver listening on ${api.url} control on http://127.0.0.1:${cport}`);

  const stop = async () => {
    control.close();
    await api.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}

if (import.meta.main) await main();
