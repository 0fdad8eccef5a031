/** HTTPS_PROXY: pooled upstream connections tunnelled with CONNECT; NO_PROXY bypasses; refusals are errors. */
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import net from "node:net";
import { bypassProxy, makeDial } from "./https_proxy.ts";
import { UpstreamPool } from "./pool.ts";
import { endpointOf } from "./endpoint.ts";
import { ok, startScriptServer } from "../../tests/support/tls_script_server.ts";

/** A CONNECT proxy that records its tunnels; `refuse` answers 403 instead. */
async function connectProxy(refuse = false) {
  const tunnels: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("error", () => {});
    client.once("data", (head: Uint8Array) => {
      const m = /^CONNECT (\S+):(\d+) HTTP\/1\.1\r\n/.exec(new TextDecoder().decode(head));
      if (!m) return client.destroy();
      tunnels.push(`${m[1]}:${m[2]}`);
      if (refuse) return client.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
      const upstream = net.connect(Number(m[2]), m[1], () => {
        // The proxy's answer and nothing else: the TLS handshake starts after it.
        client.write("HTTP/1.1 200 Connection established\r\n\r\n");
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on("error", () => client.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    tunnels,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Runs `fn` with these environment variables set (the dialer reads them when made). */
function withEnv<T>(env: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

Deno.test("through HTTPS_PROXY: requests are tunnelled and the tunnel is reused; NO_PROXY bypasses", async () => {
  const s = await startScriptServer((req, conn) => conn.socket.write(ok(`got ${req.head.url}`)));
  const proxy = await connectProxy();
  try {
    const ep = endpointOf(s.url);
    const get = async (pool: UpstreamPool, path: string) => {
      const res = await pool.request(ep, { method: "GET", path, headers: { host: ep.host } }).response;
      let body = "";
      for await (const c of res) body += new TextDecoder().decode(c as Uint8Array);
      return body;
    };
    const via = withEnv(
      { HTTPS_PROXY: proxy.url, NO_PROXY: "" },
      () => new UpstreamPool({ ca: s.pki.caPem, dial: makeDial() }),
    );
    try {
      assertEquals(await get(via, "/one"), "got /one");
      assertEquals(await get(via, "/two"), "got /two");
      assertEquals(proxy.tunnels, [`127.0.0.1:${s.port}`], "one tunnel, reused");
    } finally {
      via.destroy();
    }
    const direct = withEnv(
      { HTTPS_PROXY: proxy.url, NO_PROXY: "localhost,127.0.0.1" },
      () => new UpstreamPool({ ca: s.pki.caPem, dial: makeDial() }),
    );
    try {
      assertEquals(await get(direct, "/three"), "got /three");
      assertEquals(proxy.tunnels.length, 1, "NO_PROXY: no new tunnel");
    } finally {
      direct.destroy();
    }
  } finally {
    await proxy.close();
    await s.close();
  }
});

Deno.test("a proxy that refuses CONNECT fails the request with its answer", async () => {
  const s = await startScriptServer(() => {});
  const proxy = await connectProxy(true);
  try {
    const pool = withEnv(
      { HTTPS_PROXY: proxy.url, NO_PROXY: "" },
      () => new UpstreamPool({ ca: s.pki.caPem, dial: makeDial() }),
    );
    try {
      const ep = endpointOf(s.url);
      const err = await pool.request(ep, { method: "GET", path: "/", headers: { host: ep.host } }).response
        .then(() => undefined, (e: Error) => e);
      assertMatch(err?.message ?? "", /refused CONNECT 127\.0\.0\.1:\d+: 403 Forbidden/);
    } finally {
      pool.destroy();
    }
  } finally {
    await proxy.close();
    await s.close();
  }
});

Deno.test("NO_PROXY matching", () => {
  assertEquals(bypassProxy("api.example.com", "example.com"), true);
  assertEquals(bypassProxy("api.example.com", ".example.com"), true);
  assertEquals(bypassProxy("example.org", "example.com"), false);
  assertEquals(bypassProxy("10.0.0.1", "10.0.0.1:6443"), true);
  assertEquals(bypassProxy("anything", "*"), true);
});
