/**
 * Cloud TCP connections held by lite-apiserver for W watches (and G concurrent GETs) of one
 * identity, against an HTTP/2 cloud (nginx in front of the simulated apiserver announcing S
 * concurrent streams), with `--upstream-http2 auto` and `off`.
 *
 *   deno run -A bench/h2_connections.ts [--watches 200] [--gets 32] [--streams 100,250]
 *     [--modes auto,off] [--impl codec|nginx] [--json]
 *
 * `--impl`: the HTTP/2 server in front of the simulated apiserver, the test front built from the
 * project's codec (default) or Debian's nginx.
 *
 * Counts come from the simulated apiserver's front relay (every TCP connection lite opened to the
 * cloud), so they include the health probe's anonymous connection.
 */
import https from "node:https";
import type { IncomingMessage } from "node:http";
import { type Cluster, eventually, startCluster, startLite, within } from "../tests/support/harness.ts";

interface Row {
  streams: number;
  mode: "auto" | "off";
  watches: number;
  gets: number;
  connectionsForWatches: number;
  connectionsForGets: number;
  openAtPeak: number;
}

function watch(url: string, cluster: Cluster, i: number, reqs: Set<IncomingMessage>): Promise<void> {
  return new Promise((resolve, reject) => {
    const r = https.request(`${url}/api/v1/namespaces/default/configmaps?watch=1&labelSelector=b%3D${i}`, {
      ca: cluster.pki.caPem,
      cert: cluster.kubelet.certPem,
      key: cluster.kubelet.keyPem,
      agent: false,
    }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`watch ${i}: ${res.statusCode}`));
      reqs.add(res);
      res.resume();
      resolve();
    });
    r.on("error", reject);
    r.end();
  });
}

function get(url: string, cluster: Cluster): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = https.request(`${url}/api/v1/namespaces/default/pods`, {
      ca: cluster.pki.caPem,
      cert: cluster.kubelet.certPem,
      key: cluster.kubelet.keyPem,
      agent: false,
    }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    r.on("error", reject);
    r.end();
  });
}

async function measure(
  streams: number,
  mode: "auto" | "off",
  watches: number,
  gets: number,
  impl: "codec" | "nginx",
): Promise<Row> {
  const cluster = await startCluster({ http2: { maxStreams: streams, impl } });
  const lite = await startLite(cluster, { extra: ["--upstream-http2", mode] });
  const open = new Set<IncomingMessage>();
  try {
    // Settle the health probe's own connection first.
    await eventually(() => cluster.apiserver.connections().accepted > 0, "the first health probe");
    const c0 = cluster.apiserver.connections().accepted;
    const from = cluster.apiserver.requests.length;
    // In batches: a burst of 200 TLS handshakes to the local listener is not what is measured.
    for (let i = 0; i < watches; i += 20) {
      // Bounded: nginx (--impl nginx) holds an h2 head until the first body byte, so a quiet
      // watch's head may never come; the bench then says so instead of hanging.
      await within(
        Promise.all(
          Array.from({ length: Math.min(20, watches - i) }, (_, j) => watch(lite.url, cluster, i + j, open)),
        ),
        `the heads of watches ${i}..${i + 19}`,
        30_000,
      );
    }
    await eventually(
      () =>
        cluster.apiserver.requests.slice(from).filter((r) => r.query.includes("watch=1") && r.status === 200)
          .length >= watches,
      `${watches} watches at the apiserver`,
      60_000,
    );
    const c1 = cluster.apiserver.connections().accepted;
    const statuses = await Promise.all(Array.from({ length: gets }, () => get(lite.url, cluster)));
    if (statuses.some((s) => s !== 200)) throw new Error(`GETs answered ${statuses.join(",")}`);
    const c2 = cluster.apiserver.connections().accepted;
    return {
      streams,
      mode,
      watches,
      gets,
      connectionsForWatches: c1 - c0,
      connectionsForGets: c2 - c1,
      openAtPeak: cluster.apiserver.connections().open,
    };
  } finally {
    for (const r of open) r.destroy();
    await lite.kill();
    await cluster.close();
  }
}

if (import.meta.main) {
  const flag = (name: string) => {
    const i = Deno.args.indexOf(`--${name}`);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  const args = {
    watches: flag("watches"),
    gets: flag("gets"),
    streams: flag("streams"),
    modes: flag("modes"),
    impl: (flag("impl") ?? "codec") as "codec" | "nginx",
    json: Deno.args.includes("--json"),
  };
  const watches = Number(args.watches ?? 200);
  const gets = Number(args.gets ?? 32);
  const streamsList = String(args.streams ?? "100,250").split(",").map(Number);
  const modes = String(args.modes ?? "auto,off").split(",") as Array<"auto" | "off">;
  const rows: Row[] = [];
  for (const s of streamsList) {
    for (const m of modes) rows.push(await measure(s, m, watches, gets, args.impl));
  }
  if (args.json) console.log(JSON.stringify(rows, null, 2));
  else {
    console.log("streams  mode  watches  new conns (watches)  gets  new conns (gets)  open at peak");
    for (const r of rows) {
      console.log(
        `${String(r.streams).padStart(7)}  ${r.mode.padEnd(4)}  ${String(r.watches).padStart(7)}  ${
          String(r.connectionsForWatches).padStart(19)
        }  ${String(r.gets).padStart(4)}  ${String(r.connectionsForGets).padStart(16)}  ${
          String(r.openAtPeak).padStart(12)
        }`,
      );
    }
  }
  Deno.exit(0);
}
