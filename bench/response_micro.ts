/**
 * Micro-measure of lib/http/response.ts alone: CPU time per small answer (writeHead + end(body),
 * the proxy's usual GET answer) through a sink that takes every write at once, until 'finish'.
 * No sockets, so a loaded machine moves it less than a wrk run.
 * Usage: deno run -A bench/response_micro.ts [answers, default 200000]
 */
import process from "node:process";
import { type ResponseSink, ServerResponse } from "../lib/http/response.ts";

const N = Number(Deno.args[0] ?? 200_000);
const BODY = new TextEncoder().encode("x".repeat(1600));
const HEADERS = {
  "audit-id": "0b6c8a0e-4b1e-4f7e-9e1a-5c1d2e3f4a5b",
  "cache-control": "no-cache, private",
  "content-type": "application/json",
  "x-kubernetes-pf-flowschema-uid": "e8b5a3c0-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
  "x-kubernetes-pf-prioritylevel-uid": "f9c6b4d1-2c3d-4e5f-9a0b-1c2d3e4f5a6b",
  "content-length": String(BODY.length),
};
let bytes = 0;
let finished = 0;
const sink: ResponseSink = {
  send(b, done) {
    bytes += b.length;
    done();
  },
  finished() {
    finished++;
  },
  abort() {},
};
const FOR = { method: "GET", versionMinor: 1 as const, keepAlive: true };

async function run(n: number): Promise<void> {
  // In batches, so that 'finish' callbacks (next tick) run as they would between requests.
  for (let i = 0; i < n; i += 100) {
    await new Promise<void>((resolve) => {
      let left = 100;
      for (let j = 0; j < 100; j++) {
        const res = new ServerResponse(sink, FOR);
        res.once("finish", () => --left === 0 && resolve());
        res.writeHead(200, "OK", HEADERS);
        res.end(BODY);
      }
    });
  }
}

await run(20_000); // warm-up: the JIT compiles the path
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await run(N);
const cpu = process.cpuUsage(cpu0);
const us = (cpu.user + cpu.system) / N;
console.log(
  `${N} answers: ${us.toFixed(2)} µs CPU each (${
    ((performance.now() - t0) * 1000 / N).toFixed(2)
  } µs wall), ` +
    `${finished} finished, ${(bytes / finished).toFixed(0)} bytes each`,
);
