/**
 * The listener under hostile peers (issue 18): one case per run of a fresh lite-apiserver, with the
 * cloud up (or black-holed for bodies). Prints peak RSS during the attack, RSS 10 s after it ended,
 * what kubelet (verified certificate, one request per new connection) saw during the attack, and
 * how many requests of the attack reached the cloud.
 *
 *   ./scripts/deno run -A bench/listener_attack.ts [pipeline|body413|bodies|rawtcp|slowloris ...]
 */
import tls from "node:tls";
import { type Cluster, startCluster, startLite } from "../tests/support/harness.ts";

const enc = new TextEncoder();
const ATTACK_MS = 8000;

function rssOf(pid: number) {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  const g = (k: string) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) / 1024);
  return { rss: g("VmRSS"), peak: g("VmHWM") };
}

function kubeletGet(port: number, cluster: Cluster): Promise<number> {
  return new Promise((resolve) => {
    let text = "";
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      ca: cluster.pki.caPem,
      cert: cluster.kubelet.certPem,
      key: cluster.kubelet.keyPem,
    }, () => s.write("GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      if (text.length >= 12) {
        clearTimeout(timer);
        resolve(Number(text.slice(9, 12)));
        s.destroy();
      }
    });
    s.on("error", () => {});
    s.on("close", () => resolve(0));
  });
}

/** Opens attacker connections until stopped; each returns its sockets for closing. */
type Attack = (
  port: number,
  cluster: Cluster,
  stop: { done: boolean },
  sockets: { destroy(): void }[],
) => void;

const anon = (port: number, cluster: Cluster, opts: tls.ConnectionOptions = {}) =>
  tls.connect({ host: "127.0.0.1", port, ca: cluster.pki.caPem, ...opts });

const attacks: Record<string, { extra: string[]; blackhole?: boolean; attack: Attack }> = {
  // One connection per 100 ms (up to 20), GETs with 900-byte padding, 16 per write, never read.
  pipeline: {
    extra: [],
    attack(port, cluster, stop, sockets) {
      const req = `GET /api/v1/namespaces/default/configmaps/pipe HTTP/1.1\r\nHost: x\r\nX-Pad: ${
        "p".repeat(900)
      }\r\n\r\n`;
      const batch = enc.encode(req.repeat(16));
      const open = () => {
        if (stop.done || sockets.length >= 20) return;
        const s = anon(port, cluster);
        s.on("error", () => {});
        sockets.push(s);
        s.pause();
        const pump = () => {
          while (!stop.done && !s.destroyed) if (!s.write(batch)) return void s.once("drain", pump);
        };
        s.once("secureConnect", pump);
        setTimeout(open, 100);
      };
      open();
    },
  },
  // Two 200 MiB POSTs (Content-Length) by clients that keep writing after the 413, again and again.
  body413: {
    extra: [],
    blackhole: true,
    attack(port, cluster, stop, sockets) {
      const piece = new Uint8Array(1 << 20).fill(97);
      const one = () => {
        if (stop.done) return;
        const s = anon(port, cluster, { allowHalfOpen: true } as tls.ConnectionOptions);
        sockets.push(s);
        s.on("error", () => {});
        s.once("close", () => setTimeout(one, 10));
        s.once("secureConnect", () => {
          s.write(
            `POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Length: ${
              200 << 20
            }\r\n\r\n`,
          );
          let sent = 0;
          const pump = () => {
            while (!stop.done && !s.destroyed && sent++ < 200) {
              if (!s.write(piece)) return void s.once("drain", pump);
            }
          };
          pump();
        });
      };
      one();
      one();
    },
  },
  // 40 POSTs of 3 MB (under the limit, Content-Length over the up-front read) to a cloud that never reads.
  bodies: {
    extra: [],
    blackhole: true,
    attack(port, cluster, stop, sockets) {
      const piece = new Uint8Array(3_000_000).fill(97);
      for (let i = 0; i < 40; i++) {
        const s = anon(port, cluster, { cert: cluster.kubelet.certPem, key: cluster.kubelet.keyPem });
        sockets.push(s);
        s.on("error", () => {});
        s.once("secureConnect", () => {
          if (stop.done) return;
          s.write(
            `POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
              "Transfer-Encoding: chunked\r\n\r\n",
          );
          s.write(enc.encode(`${piece.length.toString(16)}\r\n`));
          s.write(piece);
        });
      }
    },
  },
  // 1,100 TCP connections that never start TLS (under a 1,024-file limit), held, then closed.
  rawtcp: {
    extra: [],
    attack(port, _cluster, stop, sockets) {
      (async () => {
        for (let i = 0; i < 1100 && !stop.done; i++) {
          try {
            const c = await Deno.connect({ hostname: "127.0.0.1", port });
            sockets.push({ destroy: () => c.close() });
          } catch { /* refused */ }
        }
      })();
    },
  },
  // --max-connections 50 held by anonymous connections that send half a head and wait.
  slowloris: {
    extra: ["--max-connections", "50"],
    attack(port, cluster, stop, sockets) {
      const one = () => {
        if (stop.done) return;
        const s = anon(port, cluster);
        sockets.push(s);
        s.on("error", () => {});
        s.once("secureConnect", () => s.write("GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n"));
        s.once("close", () => setTimeout(one, 20));
      };
      for (let i = 0; i < 60; i++) one();
    },
  },
};

const names = Deno.args.length ? Deno.args : Object.keys(attacks);
for (const name of names) {
  const spec = attacks[name];
  if (!spec) throw new Error(`unknown case ${name}: ${Object.keys(attacks).join(", ")}`);
  const cluster = await startCluster();
  const lite = await startLite(cluster, {
    extra: spec.extra,
    launcher: { cmd: "prlimit", args: ["--nofile=1024:1024", Deno.execPath(), "run", "-A", "--quiet"] },
  });
  const pid = lite.child.pid;
  const before = rssOf(pid).rss;
  if (spec.blackhole) await cluster.apiserver.setFault("blackhole");
  const upstreamBefore = cluster.apiserver.requests.length;
  const stop = { done: false };
  const sockets: { destroy(): void }[] = [];
  spec.attack(lite.port, cluster, stop, sockets);
  const kubelet: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < ATTACK_MS) {
    if (!spec.blackhole) kubelet.push(await kubeletGet(lite.port, cluster));
    await new Promise((r) => setTimeout(r, 250));
  }
  stop.done = true;
  const upstream = cluster.apiserver.requests.length - upstreamBefore;
  for (const s of sockets) s.destroy();
  const ended = performance.now();
  let acceptsAgainMs = -1;
  if (!spec.blackhole) {
    while (performance.now() - ended < 10_000) {
      if (await kubeletGet(lite.port, cluster) === 200) {
        acceptsAgainMs = Math.round(performance.now() - ended);
        break;
      }
    }
  }
  await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (performance.now() - ended))));
  const after = rssOf(pid);
  const ok = kubelet.filter((s) => s === 200).length;
  const logLines = lite.lines.filter((l) => / (WARN|ERROR) /.test(l)).length;
  console.log(
    `${name}: RSS before ${before} MB, peak ${after.peak} MB, 10 s after ${after.rss} MB; ` +
      (spec.blackhole ? "cloud black-holed; " : `kubelet 200 on ${ok}/${kubelet.length}; `) +
      `upstream saw ${upstream} requests; ` +
      (spec.blackhole ? "" : `kubelet served again ${acceptsAgainMs} ms after the flood; `) +
      `${logLines} WARN/ERROR lines`,
  );
  await lite.kill();
  await cluster.close();
}
Deno.exit(0);
