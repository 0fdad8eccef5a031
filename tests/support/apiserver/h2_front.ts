/**
 * An HTTP/2 front for the simulated apiserver: Debian's nginx (an independent, real HTTP/2 server)
 * terminating TLS with ALPN h2,http/1.1 and `http2_max_concurrent_streams N`, proxying to the
 * simulated apiserver's plain HTTP listener. The client certificate nginx verified travels in
 * headers nginx always overwrites (a client cannot forge them), read by `frontCert`.
 */
import type { IncomingMessage } from "node:http";
import type { ConnCert } from "./auth.ts";

export interface H2FrontOptions {
  /** The simulated apiserver's plain HTTP port on 127.0.0.1. */
  backendPort: number;
  caCert: string;
  certFile: string;
  keyFile: string;
  /** SETTINGS_MAX_CONCURRENT_STREAMS nginx announces (default 100). */
  maxStreams?: number;
  /** Requests per connection before nginx sends GOAWAY (default 100000). */
  keepaliveRequests?: number;
}

export interface H2Front {
  port: number;
  close(): Promise<void>;
}

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"];

function nginxBinary(): string {
  for (const p of NGINX) {
    try {
      Deno.statSync(p);
      return p;
    } catch { /* next */ }
  }
  throw new Error(
    "the HTTP/2 test front needs nginx (apt-get install nginx-light; scripts/test installs it)",
  );
}

/** Reads the identity nginx forwarded; undefined when the request did not come through the front. */
export function frontCert(req: IncomingMessage): ConnCert | undefined {
  const verify = req.headers["x-test-front-verify"];
  if (typeof verify !== "string") return undefined;
  const dn = String(req.headers["x-test-front-dn"] ?? "");
  const serial = String(req.headers["x-test-front-serial"] ?? "").toUpperCase().replace(/^0+(?=.)/, "");
  for (const h of ["x-test-front-verify", "x-test-front-dn", "x-test-front-serial"]) delete req.headers[h];
  if (verify === "NONE" || verify === "") return { state: "none" };
  if (verify !== "SUCCESS") return { state: "invalid", serial };
  // RFC 2253 order is last RDN first; values may hold escaped commas.
  const rdns = dn.split(/(?<!\\),/).reverse();
  let cn = "";
  const groups: string[] = [];
  for (const rdn of rdns) {
    const eq = rdn.indexOf("=");
    const k = rdn.slice(0, eq);
    const v = rdn.slice(eq + 1).replace(/\\(.)/g, "$1");
    if (k === "CN") cn = v;
    if (k === "O") groups.push(v);
  }
  return { state: "verified", cn, groups, serial };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export async function startH2Front(opts: H2FrontOptions): Promise<H2Front> {
  const bin = nginxBinary();
  const dir = await Deno.makeTempDir({ prefix: "h2front-" });
  const port = freePort();
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; "" ""; }
  upstream api { server 127.0.0.1:${opts.backendPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${opts.certFile};
    ssl_certificate_key ${opts.keyFile};
    ssl_client_certificate ${opts.caCert};
    ssl_verify_client optional_no_ca;
    http2_max_concurrent_streams ${opts.maxStreams ?? 100};
    keepalive_requests ${opts.keepaliveRequests ?? 100000};
    keepalive_timeout 3600s;
    client_max_body_size 0;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Test-Front-Verify $ssl_client_verify;
      proxy_set_header X-Test-Front-DN $ssl_client_s_dn;
      proxy_set_header X-Test-Front-Serial $ssl_client_serial;
    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = new Deno.Command(bin, {
    args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let errText = "";
  void (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      if (errText.length < 4096) errText += value;
    }
  })();
  // Up when the port accepts a connection (bounded; nginx's own error if it exits first).
  const deadline = Date.now() + 10_000;
  let exited = false;
  child.status.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`nginx exited: ${errText || (await readOr(`${dir}/error.log`))}`);
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within 10 s: ${errText}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    port,
    async close() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function readOr(path: string): Promise<string> {
  return await Deno.readTextFile(path).catch(() => "");
}
