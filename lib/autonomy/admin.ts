/**
 * The autonomy controller's own admin port: `/healthz`, `/readyz` (nodes and pods listed) and
 * `/metrics` (Prometheus text).
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { ConfigError } from "../config/errors.ts";
import type { Registry } from "../admin/metrics.ts";

const PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface AutonomyAdmin {
  url: string;
  close(): Promise<void>;
}

/** Starts the admin listener; a port in use or a foreign address is a ConfigError. */
export async function startAutonomyAdmin(
  address: string,
  port: number,
  registry: Registry,
  ready: () => boolean,
): Promise<AutonomyAdmin> {
  const server = http.createServer((req, res) => {
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") return send(405, "text/plain", "method not allowed\n");
    if (path === "/healthz" || path === "/livez") return send(200, "text/plain", "ok\n");
    if (path === "/readyz") {
      return ready() ? send(200, "text/plain", "ok\n") : send(503, "text/plain", "not synced\n");
    }
    if (path === "/metrics") return send(200, PROM_TYPE, registry.render());
    send(404, "text/plain", "not found: try /healthz, /readyz or /metrics\n");
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      reject(
        new ConfigError(
          err.code === "EADDRINUSE"
            ? `--admin-port ${port}: ${address}:${port} is already in use`
            : `admin listener ${address}:${port}: ${err.message}`,
        ),
      );
    });
    server.listen(port, address, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    url: `http://${host}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
