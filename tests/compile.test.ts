/**
 * `deno task compile`: where Deno's denort runtime can be had it builds both binaries and
 * SHA256SUMS; where it cannot, it says so in one clear line per target and exits non-zero.
 * The failure is forced (an HTTPS proxy that refuses), so its message is checked on every machine;
 * the build itself runs only where a denort is available and is reported as ignored elsewhere.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import { commandOutput, freePort, ROOT } from "./support/harness.ts";

const VERSION = Deno.version.deno;

/** Local denorts for both targets, or dl.deno.land answering within 5 s. */
async function denortAvailable(): Promise<boolean> {
  if (Deno.env.get("DENORT_BIN_X86_64") && Deno.env.get("DENORT_BIN_AARCH64")) return true;
  try {
    const res = await fetch(`https://dl.deno.land/release/v${VERSION}/denort-x86_64-unknown-linux-gnu.zip`, {
      method: "HEAD",
      signal: AbortSignal.timeout(5_000),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Runs scripts/compile.ts into a fresh dist folder with `extraEnv`; DENORT_BIN* only as given. */
async function compile(extraEnv: Record<string, string>) {
  const dist = await Deno.makeTempDir({ prefix: "lite-dist-" });
  const env: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1", LITE_APISERVER_DIST: dist };
  for (const k of Object.keys(env)) if (k.startsWith("DENORT_BIN") && !(k in extraEnv)) delete env[k];
  Object.assign(env, extraEnv);
  const out = await commandOutput(
    Deno.execPath(),
    {
      args: ["run", "-A", `${ROOT}/scripts/compile.ts`],
      cwd: ROOT,
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    },
    "deno task compile",
    300_000,
  );
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text, dist };
}

Deno.test("deno task compile says in one line per target why it cannot download denort", async () => {
  // A proxy port nothing listens on: the download is refused, whatever this machine can reach.
  const proxy = `http://127.0.0.1:${freePort()}`;
  const { code, text, dist } = await compile({ HTTPS_PROXY: proxy, https_proxy: proxy, NO_PROXY: "" });
  try {
    assertEquals(code, 1, text);
    for (const t of ["x86_64", "aarch64"]) {
      assertMatch(
        text,
        new RegExp(
          `compile: ${t}-unknown-linux-gnu: could not download the denort runtime \\(https://dl\\.deno\\.land/\\S+: ` +
            `.+\\); set DENORT_BIN \\(or DENORT_BIN_${t.toUpperCase()}\\) to a local denort ${VERSION}`,
        ),
      );
    }
    assertMatch(text, /compile: 2 of 2 target\(s\) failed; dist\/SHA256SUMS not written/);
    assert(!/^\s+at /m.test(text), `no stack trace:\n${text}`);
    assertEquals([...Deno.readDirSync(dist)].filter((e) => e.name === "SHA256SUMS"), []);
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
});

Deno.test({
  name: "deno task compile builds both targets and SHA256SUMS (needs a denort)",
  ignore: !(await denortAvailable()),
  async fn() {
    const { code, text, dist } = await compile({});
    try {
      assertEquals(code, 0, text);
      const sums = await Deno.readTextFile(`${dist}/SHA256SUMS`);
      for (const t of ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]) {
        assertMatch(sums, new RegExp(`^[0-9a-f]{64}  lite-apiserver-${t}$`, "m"));
        assert((await Deno.stat(`${dist}/lite-apiserver-${t}`)).isFile);
      }
    } finally {
      await Deno.remove(dist, { recursive: true });
    }
  },
});
