/** `serve`'s configuration: defaults from the flag table, the config file, legacy SuperEdge names. */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { parseServeArgs, type ServeConfig } from "./serve_config.ts";

/** A folder with the required files, removed when the test's `using` scope ends; `parse` adds flags to them. */
function scratch() {
  const dir = Deno.makeTempDirSync({ prefix: "serve-config-" });
  for (const f of ["ca.crt", "tls.crt", "tls.key"]) Deno.writeTextFileSync(`${dir}/${f}`, "x");
  const required = [
    "--kube-apiserver-url",
    "10.0.0.1",
    "--ca-file",
    `${dir}/ca.crt`,
    "--tls-cert-file",
    `${dir}/tls.crt`,
    "--tls-private-key-file",
    `${dir}/tls.key`,
  ];
  return {
    dir,
    parse: (...extra: string[]) => parseServeArgs([...required, ...extra]) as ServeConfig,
    [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }),
  };
}

Deno.test("defaults come from the flag table", () => {
  using s = scratch();
  const { dir, parse } = s;
  const c = parse();
  assertEquals(c.upstreams, ["https://10.0.0.1"], "a bare host gets port 443");
  assertEquals(parse("--kube-apiserver-port", "6443").upstreams, ["https://10.0.0.1:6443"]);
  assertEquals(c.apiserverCaFile, `${dir}/ca.crt`, "--apiserver-ca-file defaults to --ca-file");
  assertEquals(
    [c.addresses, c.port, c.cacheBackend, c.cacheDir, c.adminAddress, c.adminPort],
    [["127.0.0.1"], 51003, "sqlite", "/var/lib/lite-apiserver", "127.0.0.1", 51004],
  );
  assertEquals(
    [c.backendTimeoutMs, c.writeTimeoutMs, c.healthIntervalMs, c.healthFailures, c.evictAfterMs],
    [3000, 60_000, 2000, 2, 7 * 86_400_000],
  );
  assertEquals([c.writeQueueBytes, c.logLevel, c.logFormat, c.tlsConfigFile], [
    64 << 20,
    "info",
    "text",
    undefined,
  ]);
});

Deno.test("flags override the config file; SuperEdge names map onto ours", () => {
  using s = scratch();
  const { dir, parse } = s;
  const file = `${dir}/config.yaml`;
  Deno.writeTextFileSync(file, "port: 6000\nbackendTimeout: 5s\naddress: [127.0.0.1, '::1']\n");
  const c = parse("--config", file, "--port", "7000", "--kube-apiserver-url", "https://10.0.0.2:6443");
  assertEquals([c.port, c.backendTimeoutMs, c.addresses], [7000, 5000, ["127.0.0.1", "::1"]]);
  assertEquals(c.upstreams, ["https://10.0.0.1", "https://10.0.0.2:6443"], "repeatable, in order");
  const legacy = parse("--timeout", "4", "--cache-type", "file", "--file-cache-path", "/data/cache");
  assertEquals([legacy.backendTimeoutMs, legacy.cacheBackend, legacy.cacheDir], [
    4000,
    "file",
    "/data/cache",
  ]);
});

Deno.test("bad values are one-line ConfigErrors", () => {
  using s = scratch();
  const { parse } = s;
  const fails = (args: string[], re: RegExp) =>
    throws(() => parse(...args), (e) => e instanceof ConfigError && re.test(e.message));
  fails(["--address", "10.0.0.300"], /--address: "10\.0\.0\.300" is not an IP address/);
  fails(["--admin-address", "example.com"], /--admin-address: "example\.com" is not an IP address/);
  fails(["--port", "x"], /--port: "x" is not a whole number/);
  fails(["--health-check-failures", "0"], /out of range/);
  fails(["extra"], /unexpected argument "extra"/);
});

Deno.test("slow-reader bounds: defaults, overrides, and clear errors", () => {
  using s = scratch();
  const c = s.parse();
  assertEquals([c.watchBufferBytes, c.answerBufferBytes, c.slowReaderTimeoutMs], [4 << 20, 8 << 20, 30_000]);
  const o = s.parse(
    "--watch-buffer-bytes",
    "1048576",
    "--answer-buffer-bytes",
    "2097152",
    "--slow-reader-timeout",
    "5s",
  );
  assertEquals([o.watchBufferBytes, o.answerBufferBytes, o.slowReaderTimeoutMs], [1 << 20, 2 << 20, 5000]);
  throws(() => s.parse("--watch-buffer-bytes", "100"), /--watch-buffer-bytes: 100 is out of range/);
  throws(
    () => s.parse("--answer-buffer-bytes", "lots"),
    /--answer-buffer-bytes: "lots" is not a whole number/,
  );
  throws(() => s.parse("--slow-reader-timeout", "10ms"), /--slow-reader-timeout: at least 100ms/);
  throws(() => s.parse("--slow-reader-timeout", "soon"), ConfigError);
});

Deno.test("listener bounds (issue 18): defaults, the anonymous share, and one-line errors", () => {
  using s = scratch();
  const c = s.parse();
  assertEquals(
    [
      c.tlsHandshakeTimeoutMs,
      c.maxAnonymousConnections,
      c.maxPipelinedRequests,
      c.requestBodyTimeoutMs,
      c.requestBodyIdleTimeoutMs,
      c.requestBodyBufferBytes,
    ],
    [10_000, 1536, 32, 60_000, 30_000, 32 << 20],
  );
  assertEquals(s.parse("--max-connections", "40").maxAnonymousConnections, 30, "3/4 of --max-connections");
  assertEquals(s.parse("--request-body-timeout", "0").requestBodyTimeoutMs, 0, "0 disables");
  const bad: [string[], RegExp][] = [
    [
      ["--max-connections", "10", "--max-anonymous-connections", "11"],
      /--max-anonymous-connections: 11 is out of range \(1 to 10\)/,
    ],
    [["--tls-handshake-timeout", "50ms"], /--tls-handshake-timeout: at least 100ms/],
    [["--request-body-idle-timeout", "soon"], /--request-body-idle-timeout: "soon" is not a duration/],
    [["--max-pipelined-requests", "0"], /--max-pipelined-requests: 0 is out of range/],
    [["--request-body-buffer-bytes", "1000"], /--request-body-buffer-bytes: 1000 is out of range/],
  ];
  for (const [args, re] of bad) {
    throws(() => s.parse(...args), (e: Error) => e instanceof ConfigError && re.test(e.message));
  }
});

Deno.test("--upstream-http2: auto by default, off accepted, anything else a ConfigError; PING timings", () => {
  using s = scratch();
  const c = s.parse();
  assertEquals([c.upstreamHttp2, c.upstreamHttp2ReadIdleMs, c.upstreamHttp2PingTimeoutMs], [
    "auto",
    30_000,
    15_000,
  ]);
  assertEquals(s.parse("--upstream-http2", "off").upstreamHttp2, "off");
  throws(
    () => s.parse("--upstream-http2", "on"),
    (e: unknown) => e instanceof ConfigError && /auto or off/.test(e.message),
  );
  throws(() => s.parse("--upstream-http2-read-idle", "10ms"), ConfigError);
  assertEquals(s.parse("--upstream-http2-ping-timeout", "2s").upstreamHttp2PingTimeoutMs, 2000);
});

Deno.test("--http2 (the listener): on by default, off accepted, anything else a ConfigError", () => {
  using s = scratch();
  assertEquals(s.parse().http2, "on");
  assertEquals(s.parse("--http2", "off").http2, "off");
  throws(
    () => s.parse("--http2", "auto"),
    (e: unknown) => e instanceof ConfigError && /--http2: "auto" is not on or off/.test(e.message),
  );
});
