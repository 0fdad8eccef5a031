/**
 * The release binary's V8 flags (deploy/v8-flags, baked in by scripts/compile.ts) are the flags of
 * every way of running from source: scripts/run-from-source (`deno task serve`, the source-install
 * unit) and the test harness (the demo, the bench). Checked on the running processes' command lines.
 */
import assert from "node:assert/strict";
import { parseV8Flags, V8_FLAGS } from "../scripts/compile.ts";
import { ROOT, startCluster, startLite } from "./support/harness.ts";

const FILE_FLAGS = parseV8Flags(await Deno.readTextFile(`${ROOT}/deploy/v8-flags`));
const EXPECTED = `--v8-flags=${FILE_FLAGS.join(",")}`;

/** The argv of a running process. */
function argvOf(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean);
}

Deno.test("deploy/v8-flags is what the release build bakes in", () => {
  assert.ok(FILE_FLAGS.length > 0, "deploy/v8-flags names no flag");
  assert.deepEqual(V8_FLAGS, FILE_FLAGS);
  const compile = Deno.readTextFileSync(`${ROOT}/scripts/compile.ts`);
  assert.match(compile, /`--v8-flags=\$\{V8_FLAGS\.join\(","\)\}`/, "deno compile gets V8_FLAGS");
});

Deno.test("a bad deploy/v8-flags is a clear error", () => {
  assert.deepEqual(parseV8Flags("# c\n--a=1 --b\n\n"), ["--a=1", "--b"]);
  assert.throws(() => parseV8Flags("max-semi-space-size=2"), /not a V8 flag/);
  assert.throws(() => parseV8Flags("--a=1,--b"), /not a V8 flag/);
});

Deno.test("deno tasks and the source-install unit run through scripts/run-from-source", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks as Record<string, string>;
  assert.equal(tasks.serve, "./scripts/run-from-source serve");
  for (const [name, cmd] of Object.entries(tasks)) {
    assert.ok(
      !/\bdeno run\b[^&;]*\bmain\.ts\b/.test(cmd),
      `task ${name} runs main.ts without deploy/v8-flags`,
    );
  }
  const unit = await Deno.readTextFile(`${ROOT}/deploy/lite-apiserver-source.service`);
  assert.match(unit, /^ExecStart=\/opt\/lite-apiserver\/scripts\/run-from-source serve /m);
  // The same allocator environment as the release unit scripts/install.sh writes.
  const release = await Deno.readTextFile(`${ROOT}/scripts/install.sh`);
  const mallocEnv = (t: string) => /^Environment=MALLOC_.*$/m.exec(t)?.[0];
  assert.ok(mallocEnv(release));
  assert.equal(mallocEnv(unit), mallocEnv(release));
});

Deno.test("lite-apiserver runs with deploy/v8-flags from run-from-source and from the harness", async () => {
  await using cluster = await startCluster();
  const started = [];
  try {
    // The harness's default (the demo, the tests) and scripts/run-from-source (deno task serve, the unit).
    const harness = await startLite(cluster);
    started.push(harness);
    const script = await startLite(cluster, {
      launcher: { cmd: `${ROOT}/scripts/run-from-source`, args: [], entry: false },
    });
    started.push(script);
    for (const lite of started) {
      const argv = argvOf(lite.child.pid);
      assert.ok(argv.includes(EXPECTED), `${argv.join(" ")} lacks ${EXPECTED}`);
      assert.ok(argv.includes(`${ROOT}/main.ts`) && argv.includes("serve"), argv.join(" "));
    }
  } finally {
    for (const lite of started) {
      await lite.kill();
      await Deno.remove(lite.cacheDir, { recursive: true }).catch(() => {});
    }
  }
});
