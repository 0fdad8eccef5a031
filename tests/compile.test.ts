/**
 * `deno task compile`: where Deno's denort runtime can be had it builds both binaries and
 * SHA256SUMS; where it cannot (as on the machines this project is developed on), it says so in
 * one clear line per target and exits non-zero. Either way the outcome is checked, not skipped.
 */
import { deepStrictEqual as assertEquals, match as assertMatch, ok as assert } from "node:assert/strict";
import { ROOT } from "./support/harness.ts";

Deno.test("deno task compile builds both targets or says clearly why it cannot", async () => {
  const dist = await Deno.makeTempDir({ prefix: "lite-dist-" });
  const env: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1", LITE_APISERVER_DIST: dist };
  for (const k of Object.keys(env)) if (k.startsWith("DENORT_BIN")) delete env[k];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/scripts/compile.ts`],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  try {
    if (out.code === 0) {
      const sums = await Deno.readTextFile(`${dist}/SHA256SUMS`);
      for (const t of ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]) {
        assertMatch(sums, new RegExp(`^[0-9a-f]{64}  lite-apiserver-${t}$`, "m"));
        assert((await Deno.stat(`${dist}/lite-apiserver-${t}`)).isFile);
      }
    } else {
      for (const t of ["x86_64", "aarch64"]) {
        assertMatch(
          text,
          new RegExp(`${t}-unknown-linux-gnu: could not download the denort runtime .*set DENORT_BIN`),
        );
      }
      assertMatch(text, /SHA256SUMS not written/);
      assert(!/^\s+at /m.test(text), "no stack trace");
      assertEquals([...Deno.readDirSync(dist)].filter((e) => e.name === "SHA256SUMS"), []);
    }
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
});
