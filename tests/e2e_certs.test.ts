/**
 * Certificate rotation through the real process: kubelet's client pair replaced in place, the
 * serving certificate swapped, a broken replacement, an identity added to the tls-config.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import tls from "node:tls";
import { eventually, httpsClient, startCluster, startLite, within } from "./support/harness.ts";

const strip0 = (s?: string) => (s ?? "").toUpperCase().replace(/^0+(?=.)/, "");

async function servingSerial(port: number, caPem: string): Promise<string> {
  const sock = tls.connect({ host: "127.0.0.1", port, ca: caPem, servername: "localhost" });
  try {
    await new Promise<void>((r, j) => sock.once("secureConnect", () => r()).once("error", j));
    return strip0(sock.getPeerCertificate().serialNumber);
  } finally {
    sock.destroy();
  }
}

Deno.test("certificates are followed without a restart", async (t) => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster);
  const stop = { now: false };
  const failures: string[] = [];
  let loops = 0;
  // A client looping over reads during the rotations: none may fail.
  const loop = (async () => {
    const c = httpsClient(lite.url, cluster.pki.caPem, { pair: cluster.kubelet });
    try {
      while (!stop.now) {
        const r = await c.json("/api/v1/namespaces/default/pods");
        if (r.status !== 200 || r.headers.get("x-lite-apiserver-source") === "cache") {
          failures.push(`${r.status}`);
        }
        loops++;
      }
    } catch (e) {
      failures.push(String(e));
    } finally {
      c.close();
    }
  })();
  try {
    await eventually(() => loops > 5, "the read loop running");

    await t.step(
      "kubelet's pair replaced in place: the new certificate is used without a restart",
      async () => {
        const next = await cluster.pki.client("system:node:edge-1", ["system:nodes"], {
          name: "kubelet-next",
        });
        await Deno.writeTextFile(cluster.kubelet.combined, next.certPem + next.keyPem);
        await cluster.apiserver.waitForRequest(
          (r) => strip0(r.certSerial) === strip0(next.serial) && r.user === "system:node:edge-1",
          15_000,
        );
        await lite.waitForLine(/client identity loaded.*system:node:edge-1/);
      },
    );

    await t.step("a broken replacement keeps the last good pair in service and says why", async () => {
      // The pair the read loop uses now (the last request overall may be a health probe, which
      // carries no client certificate).
      const pods = "/api/v1/namespaces/default/pods";
      const current = cluster.apiserver.requests.findLast((r) => r.path === pods)!.certSerial;
      assert(current, "the read loop's requests carry kubelet's certificate");
      const from = lite.lines.length;
      await Deno.writeTextFile(
        cluster.kubelet.combined,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
      );
      await lite.waitForLine(/kubelet-client\.pem|keeping serial/, 10_000, from);
      const before = cluster.apiserver.requests.length;
      await eventually(() => cluster.apiserver.requests.length > before + 3, "more reads");
      for (const r of cluster.apiserver.requests.slice(before)) {
        if (r.path === pods) {
          assertEquals(r.certSerial, current, "old pair still used");
        }
      }
    });

    await t.step("an identity added to the tls-config file is used without a restart", async () => {
      const proxyUser = await cluster.pki.client("system:kube-proxy", ["system:node-proxier"], {
        name: "kube-proxy",
      });
      const fixed = await cluster.pki.client("system:node:edge-1", ["system:nodes"], {
        name: "kubelet-fixed",
      });
      await Deno.writeTextFile(cluster.kubelet.combined, fixed.certPem + fixed.keyPem);
      await Deno.writeTextFile(
        cluster.tlsConfigFile,
        JSON.stringify([
          { cert: cluster.kubelet.combined, key: cluster.kubelet.combined },
          { cert: proxyUser.cert, key: proxyUser.key },
        ]),
      );
      await lite.waitForLine(/client identity loaded.*system:kube-proxy/);
      const c = httpsClient(lite.url, cluster.pki.caPem, { pair: proxyUser });
      try {
        await c.json("/api/v1/services");
        const rec = cluster.apiserver.requests.findLast((r) => r.path === "/api/v1/services")!;
        assertEquals(rec.user, "system:kube-proxy");
        assertEquals(strip0(rec.certSerial), strip0(proxyUser.serial));
      } finally {
        c.close();
      }
    });

    await t.step("the serving certificate is swapped for new handshakes without a restart", async () => {
      const before = await servingSerial(lite.port, cluster.pki.caPem);
      assertEquals(before, strip0(cluster.serving.serial));
      const next = await cluster.pki.server("lite-apiserver-next");
      await Deno.writeTextFile(cluster.serving.key, next.keyPem);
      await Deno.writeTextFile(cluster.serving.cert, next.certPem);
      await eventually(
        async () => (await servingSerial(lite.port, cluster.pki.caPem)) === strip0(next.serial),
        "the new serving cert",
      );
    });

    stop.now = true;
    await within(loop, "the read loop to finish its last read");
    assertEquals(failures, [], "no failed reads during the rotations");
    assert(loops > 20, `the loop ran (${loops} reads)`);
  } finally {
    stop.now = true;
    await within(loop, "the read loop to finish its last read");
  }
});

Deno.test("SIGHUP reloads a serving certificate swapped where the file watcher cannot see it", async () => {
  await using cluster = await startCluster();
  // A Secret volume's layout: tls.crt -> ..data/tls.crt, ..data -> ..v1. Swapping `..data` to a new
  // folder changes what tls.crt reads without an event on any name the watcher follows, so only the
  // reload on SIGHUP (or the 5-minute re-read) can pick it up.
  const dir = `${cluster.dir}/secret-volume`;
  const version = async (name: string, pair: { certPem: string; keyPem: string }) => {
    await Deno.mkdir(`${dir}/${name}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${name}/tls.crt`, pair.certPem);
    await Deno.writeTextFile(`${dir}/${name}/tls.key`, pair.keyPem);
    await Deno.symlink(name, `${dir}/..data_tmp`);
    await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  };
  await version("..v1", cluster.serving);
  await Deno.symlink("..data/tls.crt", `${dir}/tls.crt`);
  await Deno.symlink("..data/tls.key", `${dir}/tls.key`);
  await using lite = await startLite({
    ...cluster,
    serving: { ...cluster.serving, cert: `${dir}/tls.crt`, key: `${dir}/tls.key` },
  });
  assertEquals(await servingSerial(lite.port, cluster.pki.caPem), strip0(cluster.serving.serial));
  const next = await cluster.pki.server("lite-apiserver-v2");
  await version("..v2", next);
  assertEquals(
    await servingSerial(lite.port, cluster.pki.caPem),
    strip0(cluster.serving.serial),
    "not picked up by the file watcher (else this test would not prove the SIGHUP reload)",
  );
  lite.child.kill("SIGHUP");
  await eventually(
    async () => (await servingSerial(lite.port, cluster.pki.caPem)) === strip0(next.serial),
    "the new serving certificate presented after SIGHUP",
  );
});
