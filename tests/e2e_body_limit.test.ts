/**
 * Request bodies against a black-holed cloud: a chunked body that nothing reads still meets its
 * 413 at the body limit (it is read on to the limit, so the client learns of it; the shared body
 * budget bounds such bodies together); a Content-Length body over the limit is refused before it is read.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { startCluster, startLite, within } from "./support/harness.ts";

/** Sends a POST of `mb` MiB (chunked or with Content-Length) and returns the answer's status line. */
function post(port: number, ca: string, mb: number, chunked: boolean): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca }, () => {
      s.write(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : `Content-Length: ${mb << 20}\r\n\r\n`),
      );
      const piece = new Uint8Array(1 << 20).fill(97);
      let sent = 0;
      const pump = () => {
        while (sent < mb && !s.destroyed) {
          sent++;
          const data = chunked
            ? Buffer.concat([Buffer.from("100000\r\n"), piece, Buffer.from("\r\n")])
            : piece;
          if (!s.write(data)) return void s.once("drain", pump);
        }
      };
      pump();
    });
    let text = "";
    s.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      if (text.includes("\r\n")) {
        resolve(text.split("\r\n")[0]);
        s.destroy();
      }
    });
    s.on("error", () => resolve(text.split("\r\n")[0] || "connection error"));
    s.on("close", () => resolve(text.split("\r\n")[0] || "closed without an answer"));
  });
}

Deno.test("request bodies over the limit get 413 even when the cloud is black-holed", async () => {
  await using cluster = await startCluster();
  await using lite = await startLite(cluster, { extra: ["--max-request-body-bytes", String(2 << 20)] });
  await cluster.apiserver.setFault("blackhole");
  const chunked = await within(
    post(lite.port, cluster.pki.caPem, 16, true),
    "the answer to a 16 MiB chunked POST",
    30_000,
  );
  assert.equal(chunked, "HTTP/1.1 413 Content Too Large");
  const sized = await within(
    post(lite.port, cluster.pki.caPem, 16, false),
    "the answer to a 16 MiB POST with Content-Length",
    30_000,
  );
  assert.equal(sized, "HTTP/1.1 413 Content Too Large");
});
