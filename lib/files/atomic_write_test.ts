/** The strict atomic write shared by the file store and `kubeconfig redirect`. */
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { writeFileAtomic } from "./atomic_write.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "atomic-write-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("replaces the content with exactly the requested mode and leaves no temp file", () =>
  withDir(async (dir) => {
    const path = `${dir}/config.yaml`;
    await Deno.writeTextFile(path, "old", { mode: 0o600 });
    await writeFileAtomic(path, "new", { mode: 0o664 });
    assertEquals(await Deno.readTextFile(path), "new");
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o664, "the mode asked for, whatever the umask");
    await writeFileAtomic(`${dir}/secret.pem`, new Uint8Array([1, 2, 3]));
    assertEquals((await Deno.stat(`${dir}/secret.pem`)).mode! & 0o777, 0o600, "0600 by default");
    assertEquals(names(dir), ["config.yaml", "secret.pem"]);
  }));

Deno.test("a failed replace throws, keeps the old content and removes its temp file", () =>
  withDir(async (dir) => {
    // Renaming a file over a non-empty directory fails after the temp file was written.
    await Deno.mkdir(`${dir}/target`);
    await Deno.writeTextFile(`${dir}/target/keep`, "x");
    await rejects(writeFileAtomic(`${dir}/target`, "data", { tmpPrefix: "#tmp-" }));
    assertEquals(names(dir), ["target"], "no temp file left behind");
    assertEquals(await Deno.readTextFile(`${dir}/target/keep`), "x");
    await rejects(writeFileAtomic(`${dir}/missing/file`, "data"), Deno.errors.NotFound);
  }));
