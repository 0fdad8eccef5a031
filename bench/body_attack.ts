/**
 * Memory under a request-body attack with the cloud black-holed: two 200 MiB POSTs at once, with
 * Content-Length (`cl`) or chunked (`chunked`). Prints lite-apiserver's RSS before and after, and
 * each POST's answer.
 *
 *   ./scripts/deno run -A bench/body_attack.ts cl|chunked
 */
import { startCluster, startLite } from "../tests/support/harness.ts";
import tls from "node:tls";
const cluster = await startCluster();
const lite = await startLite(cluster);
const pid = lite.child.pid;
const rss = () => {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  const g = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) / 1024;
  return { rss: Math.round(g("VmRSS")), hwm: Math.round(g("VmHWM")) };
};
await cluster.apiserver.setFault("blackhole");
const before = rss();
const MB = 200;
const post = (chunked: boolean) =>
  new Promise<string>((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port: lite.port, ca: cluster.pki.caPem }, () => {
      s.write(
        `POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : `Content-Length: ${MB << 20}\r\n\r\n`),
      );
      const chunk = new Uint8Array(1 << 20).fill(97);
      let sent = 0;
      const pump = () => {
        while (sent < MB) {
          sent++;
          const data = chunked
            ? Buffer.concat([Buffer.from("100000\r\n"), chunk, Buffer.from("\r\n")])
            : chunk;
          if (!s.write(data)) return s.once("drain", pump);
        }
      };
      pump();
    });
    let text = "";
    s.on("data", (d) => (text += d.toString()));
    s.on("error", () => resolve(text.split("\r\n")[0] || "error"));
    s.on("close", () => resolve(text.split("\r\n")[0] || "closed"));
    setTimeout(() => {
      s.destroy();
    }, 20_000);
  });
const which = Deno.args[0] === "chunked";
const answers = await Promise.all([post(which), post(which)]);
const after = rss();
console.log(JSON.stringify({ before, after, answers }));
await lite.kill();
await cluster.close();
