/**
 * startServer's lifecycle, in-process: a start that fails part-way (the admin port is taken) closes
 * what it had opened (the main port is free again, the cache can be opened again), and close() stops
 * everything once, however often it is called.
 */
import assert from "node:assert/strict";
import { parseServeArgs } from "../lib/config/serve_config.ts";
import { configureLog } from "../lib/log.ts";
import { startServer } from "../lib/server.ts";
import { openStore } from "../lib/store/open_store.ts";
import { createPki } from "./support/pki.ts";
import { freePort } from "./support/harness.ts";

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("startServer: a failed start closes what it opened; close() is idempotent", async () => {
  const lines: string[] = [];
  configureLog({ sink: (l) => lines.push(l) });
  const pki = await createPki();
  const serving = await pki.server("lite-apiserver");
  const cacheDir = await Deno.makeTempDir({ prefix: "lite-lifecycle-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = freePort();
  const args = (adminPort: number) => [
    "--kube-apiserver-url",
    "https://127.0.0.1:9",
    "--ca-file",
    pki.caCert,
    "--tls-cert-file",
    serving.cert,
    "--tls-private-key-file",
    serving.key,
    "--cache-dir",
    cacheDir,
    "--port",
    String(port),
    "--admin-port",
    String(adminPort),
  ];
  try {
    const config = parseServeArgs(args((taken.addr as Deno.NetAddr).port))!;
    await assert.rejects(startServer(config), /admin-port \d+: .*already in use/);
    // Everything started before the admin listener was closed again.
    assert.ok(portFree(port), "the main listener's port is released after the failed start");
    const store = await openStore({ backend: "sqlite", dir: cacheDir });
    await store.close();

    const server = await startServer(parseServeArgs(args(0))!);
    assert.equal(portFree(port), false, "serving");
    await Promise.all([server.close(), server.close()]);
    await server.close();
    assert.ok(portFree(port), "the port is released after close()");
  } finally {
    taken.close();
    configureLog({ sink: (l) => console.error(l) });
    await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    await Deno.remove(pki.dir, { recursive: true }).catch(() => {});
  }
});
