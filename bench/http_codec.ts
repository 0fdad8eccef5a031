/**
 * Micro-measure of the HTTP/1.1 codec (lib/http): request heads parsed per second (a kubectl-like
 * GET), response heads + content-length bodies, and chunked bodies decoded. Prints one line each.
 * Usage: deno run -A bench/http_codec.ts
 */
import process from "node:process";
import { RequestHeadParser, ResponseHeadParser } from "../lib/http/head_parser.ts";
import { ChunkedDecoder, encodeChunk, LAST_CHUNK } from "../lib/http/body.ts";

const enc = new TextEncoder();
const request = enc.encode(
  "GET /api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns&limit=500 HTTP/1.1\r\n" +
    "Host: 127.0.0.1:51003\r\nUser-Agent: kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0\r\n" +
    "Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json\r\n" +
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nKubectl-Command: kubectl get\r\n" +
    "Kubectl-Session: 0f6c3a4e-1b2c-4d5e-8f90-123456789abc\r\nAccept-Encoding: gzip\r\n\r\n",
);
const response = enc.encode(
  "HTTP/1.1 200 OK\r\nAudit-Id: 0f6c3a4e-1b2c-4d5e-8f90-123456789abc\r\nCache-Control: no-cache, private\r\n" +
    "Content-Type: application/json\r\nX-Kubernetes-Pf-Flowschema-Uid: 1b2c\r\nX-Kubernetes-Pf-Prioritylevel-Uid: 4d5e\r\n" +
    "Date: Sun, 29 Nov 2026 17:00:00 GMT\r\nContent-Length: 1600\r\n\r\n",
);

function measure(name: string, unit: string, n: number, fn: () => void): void {
  fn(); // warm-up
  // CPU time, not wall time: the figure should not depend on what else the machine runs.
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  const s = (c.user + c.system) / 1e6;
  console.log(`${name.padEnd(44)} ${Math.round(n / s).toLocaleString("en")} ${unit}/s (per CPU second)`);
}

const N = 200_000;
// Pipelined: many heads in one buffer, as a busy keep-alive connection delivers them.
const batch = new Uint8Array(request.length * 100);
for (let i = 0; i < 100; i++) batch.set(request, i * request.length);
measure("request heads (kubectl GET, 8 fields)", "requests", N, () => {
  const p = new RequestHeadParser();
  for (let k = 0; k < N / 100; k++) {
    let pos = 0;
    while (pos < batch.length) {
      const r = p.feed(batch, pos);
      if (typeof r !== "number" || r < 0) throw new Error("parse failed");
      pos = r;
    }
  }
});
measure("request heads, one per chunk", "requests", N, () => {
  const p = new RequestHeadParser();
  for (let k = 0; k < N; k++) if (p.feed(request, 0) !== request.length) throw new Error("parse failed");
});
measure("response heads (apiserver 200, 8 fields)", "responses", N, () => {
  const p = new ResponseHeadParser();
  for (let k = 0; k < N; k++) {
    p.expect("GET");
    if (p.feed(response, 0) !== response.length) throw new Error("parse failed");
  }
});
const chunks: Uint8Array[] = [];
for (let i = 0; i < 64; i++) {
  chunks.push(encodeChunk(enc.encode(`{"type":"MODIFIED","object":{"i":${i}}}\n`.repeat(20))));
}
chunks.push(LAST_CHUNK);
const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
let o = 0;
for (const c of chunks) body.set(c, o), o += c.length;
const M = 2000;
measure(
  `chunked bodies (${(body.length / 1024).toFixed(0)} KiB, 64 chunks)`,
  "MiB",
  (M * body.length) / (1 << 20),
  () => {
    for (let k = 0; k < M; k++) {
      let got = 0;
      const d = new ChunkedDecoder((c) => got += c.length);
      d.feed(body, 0);
      if (!d.done || got === 0) throw new Error("decode failed");
    }
  },
);
