/**
 * The online path's decisions, one request at a time, against scripted node:tls upstreams: failover
 * to the next endpoint, what is not replayed, deadlines for reads (cache or keep waiting) and
 * writes (504), going offline while waiting or mid-watch, the watch-cut hook, the answer transform,
 * a retired credential.
 */
import { DEFAULT_ANSWER_BOUNDS } from "./slow_reader.ts";
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import { PassThrough, Transform } from "node:stream";
import type { Duplex } from "node:stream";
import { RequestHeadParser } from "../http/head_parser.ts";
import { ServerRequest } from "../http/request.ts";
import { ServerResponse } from "../http/response.ts";
import type { RequestContext } from "../exchange/context.ts";
import { parseRequestInfo } from "../request/request_info.ts";
import { representationOf } from "../request/representation.ts";
import type { Cache } from "../cache/cache.ts";
import { UpstreamAgents } from "../upstream/agents.ts";
import { UpstreamHealth } from "../upstream/health.ts";
import { forward, type ForwardDeps } from "./forward.ts";
import { abandonInFlight, InFlightSet, retirePool } from "./deadlines.ts";
import { Timers } from "../timers.ts";
import { endWatch } from "./relay.ts";
import { ok, type ScriptServer, startScriptServer } from "../../tests/support/tls_script_server.ts";
import { eventually, freePort, within } from "../../tests/support/harness.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface ClientSide {
  ctx: RequestContext;
  /** Everything written to the client so far. */
  text(): string;
  /** The response finished (or was destroyed). */
  done: Promise<"finished" | "aborted">;
}

/** A client request as the listener hands it over, and a response that records its bytes. */
function clientRequest(method: string, url: string, headers: Record<string, string> = {}): ClientSide {
  const raw = `${method} ${url} HTTP/1.1\r\nhost: lite\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
  const parser = new RequestHeadParser();
  parser.feed(enc.encode(raw));
  const head = parser.head!;
  const req = new ServerRequest(head, new PassThrough() as Duplex, { pull() {} });
  if (head.body === "none") req.finishBody();
  const out: Uint8Array[] = [];
  let settle!: (v: "finished" | "aborted") => void;
  const done = new Promise<"finished" | "aborted">((r) => (settle = r));
  const res = new ServerResponse({
    send(bytes, next) {
      out.push(bytes.slice());
      next();
    },
    finished: () => settle("finished"),
    abort: () => settle("aborted"),
  }, { method, versionMinor: 1, keepAlive: true });
  const ctx: RequestContext = {
    req,
    res,
    peer: { presented: false, verified: false, cn: "", groups: [], serial: "" },
    identity: { kind: "anonymous", cacheId: "anonymous" },
    info: parseRequestInfo(method, url),
    rep: representationOf(headers.accept),
    startedAt: performance.now(),
    source: "local",
  };
  return { ctx, text: () => out.map((b) => dec.decode(b)).join(""), done };
}

interface World {
  deps: ForwardDeps;
  health: UpstreamHealth;
  agents: UpstreamAgents;
  unreachable: string[];
  cut: string[];
  observed: number[];
  slowReads: number;
}

async function withWorld(
  endpoints: string[],
  s: ScriptServer,
  fn: (w: World) => Promise<void>,
  opts: { cached?: string; backendTimeoutMs?: number; writeTimeoutMs?: number } = {},
) {
  const timers = new Timers();
  const agents = new UpstreamAgents(s.pki.caPem, [], { timers });
  const health = new UpstreamHealth({
    endpoints,
    intervalMs: 60_000,
    failures: 1,
    timeoutMs: 1000,
    pool: () => agents.anonymous(),
  });
  // Not started, and closed: no probes run; request failures still mark endpoints.
  health.close();
  const w: World = { health, agents, unreachable: [], cut: [], observed: [], slowReads: 0, deps: undefined! };
  const inflight = new InFlightSet(timers);
  w.deps = {
    agents,
    health,
    cache: {} as Cache,
    inflight,
    backendTimeoutMs: opts.backendTimeoutMs ?? 5_000,
    writeTimeoutMs: opts.writeTimeoutMs ?? 5_000,
    unreachable: (ctx, reason) => {
      w.unreachable.push(reason);
      ctx.res.writeHead(503, { "content-type": "text/plain" });
      ctx.res.end("from the offline path");
    },
    slowRead: (ctx) => {
      w.slowReads++;
      const body = opts.cached;
      if (body === undefined) return Promise.resolve(undefined);
      return Promise.resolve(() => {
        ctx.res.writeHead(200, { "x-lite-apiserver-source": "cache" });
        ctx.res.end(body);
      });
    },
    observe: (_ctx, status) => void w.observed.push(status),
    watchCut: (ctx, reason) => {
      w.cut.push(reason);
      endWatch(ctx);
    },
    bounds: DEFAULT_ANSWER_BOUNDS,
  };
  try {
    await fn(w);
  } finally {
    abandonInFlight(inflight, "shutdown");
    agents.destroy();
    timers.close();
  }
}

Deno.test("failover: the 2nd endpoint answers a GET while the 1st refuses, in one request", async () => {
  const s = await startScriptServer((req, conn) => conn.socket.write(ok(`from b: ${req.head.url}`)));
  const refused = `https://127.0.0.1:${freePort()}`;
  try {
    await withWorld([refused, s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/namespaces/default/pods/a");
      forward(c.ctx, w.deps);
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertMatch(c.text(), /^HTTP\/1\.1 200 OK\r\n/);
      assert(c.text().endsWith("from b: /api/v1/namespaces/default/pods/a"), c.text());
      assertEquals(w.health.endpoints[0].healthy, false, "the refusing endpoint was reported");
      assertEquals(w.health.endpoints[1].healthy, true);
      assertEquals(w.observed, [200]);
      assertEquals(w.unreachable, []);
    });
  } finally {
    await s.close();
  }
});

Deno.test("failover: a write whose body is streamed is not sent to another endpoint: 503, not applied", async () => {
  const s = await startScriptServer((_req, conn) => conn.socket.write(ok("created")));
  const refused = `https://127.0.0.1:${freePort()}`;
  try {
    await withWorld([refused, s.url], s, async (w) => {
      const c = clientRequest("POST", "/api/v1/namespaces/default/configmaps", { "content-length": "2" });
      forward(c.ctx, w.deps);
      c.ctx.req.push(enc.encode("{}"));
      c.ctx.req.finishBody();
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertMatch(c.text(), /^HTTP\/1\.1 503 /);
      assertMatch(c.text(), /the request was not applied/);
      assertEquals(s.requests.length, 0, "the 2nd endpoint never saw the write");
    });
  } finally {
    await s.close();
  }
});

Deno.test("failover: an endpoint that answers (even 500) is not failed over", async () => {
  const a = await startScriptServer((_req, conn) =>
    conn.socket.write(enc.encode("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom"))
  );
  const b = await startScriptServer((_req, conn) => conn.socket.write(ok("b")));
  try {
    await withWorld([a.url, b.url], a, async (w) => {
      const c = clientRequest("GET", "/api/v1/pods");
      forward(c.ctx, w.deps);
      await within(c.done, "the answer to c");
      assertMatch(c.text(), /^HTTP\/1\.1 500 /);
      assertEquals(b.requests.length, 0);
    });
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("deadline: a read with no answer in time is answered from the cache and its upstream call closed", async () => {
  const s = await startScriptServer(() => {/* never answers */});
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/namespaces/default/configmaps/x");
      forward(c.ctx, w.deps);
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertMatch(c.text(), /x-lite-apiserver-source: cache/i);
      assert(c.text().endsWith("cached copy"));
      await eventually(() => s.open() === 0, "the upstream connection closed");
      assertEquals(w.health.endpoints[0].healthy, true, "slow is not down");
    }, { cached: "cached copy", backendTimeoutMs: 100 });
  } finally {
    await s.close();
  }
});

Deno.test("deadline: a slow read with nothing cached keeps waiting for the upstream", async () => {
  let answer: (() => void) | undefined;
  const s = await startScriptServer((_req, conn) => (answer = () => conn.socket.write(ok("late but fresh"))));
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/namespaces/default/configmaps/x");
      forward(c.ctx, w.deps);
      await eventually(() => w.slowReads === 1 && answer, "the deadline passed and the cache was asked");
      answer!();
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertMatch(c.text(), /^HTTP\/1\.1 200 /);
      assert(c.text().endsWith("late but fresh"));
    }, { backendTimeoutMs: 50 });
  } finally {
    await s.close();
  }
});

Deno.test("deadline: a write with no answer within the write timeout gets 504", async () => {
  const s = await startScriptServer(() => {});
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("DELETE", "/api/v1/namespaces/default/configmaps/x");
      forward(c.ctx, w.deps);
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertMatch(c.text(), /^HTTP\/1\.1 504 /);
      assertMatch(c.text(), /may or may not have been applied/);
      assertEquals(w.slowReads, 0);
      assertEquals(w.observed, [504]);
    }, { writeTimeoutMs: 100 });
  } finally {
    await s.close();
  }
});

Deno.test("offline while waiting: a read goes to the offline path, a write keeps its chance", async () => {
  const held: Array<() => void> = [];
  const s = await startScriptServer((req, conn) =>
    held.push(() => conn.socket.write(ok(`done ${req.head.method}`, "")))
  );
  try {
    await withWorld([s.url], s, async (w) => {
      const read = clientRequest("GET", "/api/v1/pods");
      const write = clientRequest("DELETE", "/api/v1/namespaces/default/pods/a");
      forward(read.ctx, w.deps);
      forward(write.ctx, w.deps);
      await eventually(() => held.length === 2, "both requests at the upstream");
      abandonInFlight(w.deps.inflight, "offline");
      assertEquals(await within(read.done, "the answer to read"), "finished");
      assert(read.text().endsWith("from the offline path"));
      assertEquals(w.unreachable, ["offline"]);
      held[1]();
      assertEquals(await within(write.done, "the answer to write"), "finished");
      assert(write.text().endsWith("done DELETE"), write.text());
    });
  } finally {
    await s.close();
  }
});

const WATCH_HEAD = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
const EVENT = '{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a"}}}\n';
const chunk = (s: string) => `${enc.encode(s).byteLength.toString(16)}\r\n${s}\r\n`;

Deno.test("a watch whose upstream connection fails mid-answer goes to the watch-cut hook, once", async () => {
  const s = await startScriptServer((_req, conn) => {
    conn.socket.write(enc.encode(WATCH_HEAD + chunk(EVENT)));
    setTimeout(() => conn.socket.destroy(), 20);
  });
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/pods?watch=1");
      forward(c.ctx, w.deps);
      assertEquals(
        await within(c.done, "the answer to c"),
        "finished",
        "the client's watch ended cleanly, not torn",
      );
      assert(c.text().includes(EVENT), "the event before the cut was relayed");
      assertEquals(w.cut, ["the upstream connection failed mid-answer"]);
    });
  } finally {
    await s.close();
  }
});

Deno.test("going offline during a watch goes to the watch-cut hook; other answers are left to finish", async () => {
  const s = await startScriptServer((_req, conn) => conn.socket.write(enc.encode(WATCH_HEAD + chunk(EVENT))));
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/pods?watch=1");
      forward(c.ctx, w.deps);
      await eventually(() => c.text().includes(EVENT), "the first event relayed");
      abandonInFlight(w.deps.inflight, "offline");
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertEquals(w.cut, ["the cloud went offline"]);
      await eventually(() => s.open() === 0, "the upstream watch connection closed");
    });
  } finally {
    await s.close();
  }
});

Deno.test("a retired credential ends its watches cleanly, not through the watch-cut hook", async () => {
  const s = await startScriptServer((_req, conn) => conn.socket.write(enc.encode(WATCH_HEAD + chunk(EVENT))));
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/pods?watch=1");
      forward(c.ctx, w.deps);
      await eventually(() => c.text().includes(EVENT), "the first event relayed");
      retirePool(w.agents.anonymous(), w.deps.inflight, 1000);
      assertEquals(await within(c.done, "the answer to c"), "finished");
      assertEquals(w.cut, []);
      await eventually(() => s.open() === 0, "the retired pool's connection closed");
    });
  } finally {
    await s.close();
  }
});

Deno.test("the request's answer rewrite applies where the upstream body is relayed", async () => {
  const s = await startScriptServer((_req, conn) =>
    conn.socket.write(ok("abc", "content-type: text/plain\r\n"))
  );
  try {
    await withWorld([s.url], s, async (w) => {
      const c = clientRequest("GET", "/api/v1/namespaces/default/endpoints/kubernetes");
      const upper = (t: string) => t.toUpperCase();
      c.ctx.rewrite = {
        body: (b) => enc.encode(upper(dec.decode(b))),
        line: upper,
        stream: () =>
          new Transform({
            transform(chunk: Uint8Array, _enc, cb) {
              cb(null, enc.encode(upper(dec.decode(chunk))));
            },
          }),
      };
      forward(c.ctx, w.deps);
      assertEquals(await within(c.done, "the answer"), "finished");
      assertMatch(
        c.text(),
        /transfer-encoding: chunked/i,
        "the rewritten body's length is not the upstream's",
      );
      assertMatch(c.text(), /ABC/);
    });
  } finally {
    await s.close();
  }
});
