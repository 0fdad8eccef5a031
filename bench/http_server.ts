/**
 * Micro-measure of the HTTP/1.1 server layer: lib/http's connection loop (on node:net, or node:tls
 * with --tls) against node:http's server (node:https with --tls), both answering a fixed 1.6 KB
 * body, with 32 keep-alive loopback connections each sending one request at a time (as wrk does).
 * The load client runs in the same process, so the figures compare the layers; they are not the
 * product's throughput. Needs openssl for --tls.
 * Usage: deno run -A bench/http_server.ts [--tls] [seconds per server, default 3]
 */
import net from "node:net";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import process from "node:process";
import { connectionDeadlines, serveConnection } from "../lib/http/server_connection.ts";
import { Timers } from "../lib/timers.ts";

const TLS = Deno.args.includes("--tls");
const SECONDS = Number(Deno.args.find((a) => !a.startsWith("--")) ?? "3");
const CONNECTIONS = 32;
const BODY = "x".repeat(1600);
const REQUEST = new TextEncoder().encode(
  "GET /api/v1/namespaces/default/pods/nginx HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n" +
    "Accept: application/json\r\n\r\n",
);

/** Drives `CONNECTIONS` keep-alive connections for `SECONDS`; returns requests answered. */
async function load(port: number): Promise<number> {
  let answered = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONNECTIONS }, () =>
    new Promise<void>((resolve) => {
      const s = connect(port, () => s.write(REQUEST));
      let seen = 0;
      s.on("data", (c: Uint8Array) => {
        // Each answer ends with the body's last bytes; count answers by the body length received.
        seen += c.length;
        const per = answerLength;
        while (per > 0 && seen >= per) {
          seen -= per;
          answered++;
          if (performance.now() < until) s.write(REQUEST);
          else {
            s.destroy();
            return resolve();
          }
        }
      });
      s.on("error", () => resolve());
    })));
  return answered;
}

let answerLength = 0;

function connect(port: number, onReady: () => void): net.Socket {
  return TLS
    ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, onReady)
    : net.connect(port, "127.0.0.1", onReady);
}

/** A throwaway self-signed serving pair (openssl). */
function servingPair(): { cert: string; key: string } {
  const dir = Deno.makeTempDirSync();
  const out = new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      `${dir}/k.pem`,
      "-out",
      `${dir}/c.pem`,
    ],
    stderr: "null",
  }).outputSync();
  if (!out.success) throw new Error("openssl failed");
  const pair = { cert: Deno.readTextFileSync(`${dir}/c.pem`), key: Deno.readTextFileSync(`${dir}/k.pem`) };
  Deno.removeSync(dir, { recursive: true });
  return pair;
}

async function run(name: string, server: net.Server): Promise<void> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  // Learn the exact length of one answer (its head varies by server).
  answerLength = await new Promise<number>((resolve) => {
    const s = connect(port, () => s.write(REQUEST));
    let got = "";
    s.on("data", (c: Uint8Array) => {
      got += new TextDecoder().decode(c);
      if (got.endsWith(BODY)) {
        s.destroy();
        resolve(new TextEncoder().encode(got).length);
      }
    });
  });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const n = await load(port);
  const secs = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  console.log(
    `${name.padEnd(26)} ${Math.round(n / secs).toLocaleString("en")} req/s wall, ` +
      `${Math.round(n / cpu).toLocaleString("en")} req per CPU second (server and client together)`,
  );
  server.close();
}

const pair = TLS ? servingPair() : undefined;
const deadlines = connectionDeadlines(new Timers(), { headerTimeoutMs: 60_000, idleTimeoutMs: 120_000 });
const serveOurs = (socket: net.Socket) =>
  serveConnection(socket, {
    deadlines,
    headerTimeoutMs: 60_000,
    idleTimeoutMs: 120_000,
    maxRequestBodyBytes: 3 << 20,
    errorBody: (status, message) => ({ contentType: "text/plain", body: `${status} ${message}` }),
    onRequest: (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": BODY.length });
      res.end(BODY);
    },
    onUpgrade: (_req, socket) => socket.destroy(),
  });
const ours = pair
  ? tls.createServer({ ...pair, ALPNProtocols: ["http/1.1"] }).on("secureConnection", serveOurs)
  : net.createServer(serveOurs);
const answer = (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { "content-type": "application/json", "content-length": BODY.length });
  res.end(BODY);
};
const node = pair ? https.createServer(pair, answer) : http.createServer(answer);
node.keepAliveTimeout = 120_000;

await run(`lib/http on node:${TLS ? "tls" : "net"}`, ours);
await run(`node:${TLS ? "https" : "http"} createServer`, node as unknown as net.Server);
Deno.exit(0);
