/**
 * The floor for comparison: the smallest `node:https` → `https.request` proxy this Deno can run
 * (no identity, no cache, nothing). Usage: min_proxy.ts UPSTREAM_URL CA_FILE CERT_FILE KEY_FILE;
 * prints `PORT <n>` when listening.
 */
import https from "node:https";

const [upstream, caFile, certFile, keyFile] = Deno.args;
const u = new URL(upstream);
const agent = new https.Agent({ keepAlive: true, maxSockets: 256, ca: Deno.readTextFileSync(caFile) });
const server = https.createServer(
  { cert: Deno.readTextFileSync(certFile), key: Deno.readTextFileSync(keyFile) },
  (req, res) => {
    const up = https.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: req.url,
        method: req.method,
        headers: { ...req.headers, host: u.host },
        agent,
      },
      (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  },
);
server.listen(0, "127.0.0.1", () => console.log(`PORT ${(server.address() as { port: number }).port}`));
