/**
 * Field fidelity of the wire: the simulated apiserver answers through its wire relay the way real
 * servers and networks do (head and body in separate segments, bodies dribbled, a Nagle-like delay
 * before the last segment, chunked lists, gzip for large answers), and real clients (kubectl 1.27,
 * 1.30, 1.33 and curl) send several requests per keep-alive connection through lite-apiserver:
 * small objects, a large list, errors (404, 403), a watch; online, across a cut and after restore.
 * Every client is a bounded process: a stalled connection fails the case with what it waited for.
 */
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { type CurlAnswer, curlKeepAlive, kubectlBounded } from "./support/clients.ts";
import {
  type Cluster,
  KUBECTL_DIR,
  type LiteProcess,
  startCluster,
  startLite,
  within,
  writeKubeconfig,
} from "./support/harness.ts";
import type { WireModeName } from "./support/apiserver/mod.ts";

const MODES: WireModeName[] = ["split", "dribble", "nagle", "chunked", "gzip"];
const VERSIONS = ["1.27", "1.30", "1.33"];
/** Enough configmaps for a list over the apiserver's 128 KiB gzip threshold. */
const BULK = 120;

type Obj = { metadata: { name: string; resourceVersion: string }; data?: Record<string, string> };
type List = { kind: string; items: Obj[] };

function seedBulk(cluster: Cluster): void {
  cluster.apiserver.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "bulk" } });
  for (let i = 0; i < BULK; i++) {
    cluster.apiserver.create({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: `cm-${String(i).padStart(3, "0")}`, namespace: "bulk" },
      data: { payload: `${i}:`.padEnd(1500, "x") },
    });
  }
  cluster.apiserver.create({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "small", namespace: "default" },
    data: { version: "0" },
  });
}

function parse<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${what}: not JSON (${text.length} bytes): ${text.slice(0, 200)}`);
  }
}

/** Checks a curl keep-alive run: one connection for all, each answer as expected. */
function checkRun(answers: CurlAnswer[], expect: Array<{ status: number; check?: (body: string) => void }>) {
  const summary = answers.map((a, i) =>
    `${a.status} ${new URL(a.url).pathname} connects=${a.connects}` +
    (a.status === expect[i]?.status ? "" : ` body=${a.body.slice(0, 160)}`)
  ).join("; ");
  assertEquals(answers.map((a) => a.status), expect.map((e) => e.status), `statuses: ${summary}`);
  assertEquals(
    answers.reduce((n, a) => n + a.connects, 0),
    1,
    `one keep-alive connection for all: ${summary}`,
  );
  answers.forEach((a, i) => expect[i].check?.(a.body));
}

const isBulk = (body: string) => assertEquals(parse<List>(body, "bulk list").items.length, BULK);
const isSmall = (version: string) => (body: string) =>
  assertEquals(parse<Obj>(body, "small configmap").data, { version });
const isStatus = (code: number) => (body: string) =>
  assertEquals(parse<{ code: number }>(body, "Status").code, code);

/**
 * Two missed probes in a row (not the harness's one) before going offline: on a loaded 2-core
 * machine one 500 ms probe can miss, and an offline moment with nothing cached yet is a 503.
 */
const STEADY = ["--health-check-failures", "2"];

Deno.test({
  name: "wire modes: kubectl and curl keep-alive through lite-apiserver, online and across a cut",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using cluster = await startCluster({ wire: "gentle" });
    seedBulk(cluster);
    let lite: (LiteProcess & { cacheDir: string }) | undefined;
    try {
      lite = await startLite(cluster, { extra: STEADY });
      const l = lite;
      const api = cluster.apiserver;
      const kc = await writeKubeconfig(cluster.dir, "kubelet", l.url, cluster.pki.caCert, cluster.kubelet);
      const kcReader = await writeKubeconfig(cluster.dir, "reader", l.url, cluster.pki.caCert, {
        token: "reader-token",
      });
      const ca = cluster.pki.caCert;
      const kubelet = { cert: cluster.kubelet.cert, key: cluster.kubelet.key };
      const u = (p: string) => `${l.url}${p}`;
      let smallVersion = 0;

      const kubectlOk = async (version: string, config: string, args: string[]) => {
        const r = await kubectlBounded(version, config, args);
        assertEquals(r.code, 0, `kubectl ${version} ${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      const readsWork = async (mode: string, version: string) => {
        const list = parse<List>(
          await kubectlOk(version, kc, ["get", "configmaps", "-n", "bulk", "-o", "json"]),
          `${mode}: kubectl ${version} bulk list`,
        );
        assertEquals(list.items.length, BULK, `${mode}: kubectl ${version} sees the whole bulk list`);
        const small = parse<Obj>(
          await kubectlOk(version, kc, ["get", "configmap", "small", "-o", "json"]),
          `${mode}: kubectl ${version} small`,
        );
        assertEquals(small.data, { version: String(smallVersion) });
      };
      const curlRun = (mode: string, compressed: boolean) =>
        curlKeepAlive([
          u("/api/v1/namespaces/default/configmaps/small"),
          u("/api/v1/namespaces/bulk/configmaps"),
          u("/api/v1/namespaces/bulk/configmaps"),
          u("/api/v1/namespaces/default/configmaps/small"),
        ], { ca, auth: kubelet, compressed, what: `${mode}: small, list, list, small as kubelet` });
      const smallListCheck = () => [
        { status: 200, check: isSmall(String(smallVersion)) },
        { status: 200, check: isBulk },
        { status: 200, check: isBulk },
        { status: 200, check: isSmall(String(smallVersion)) },
      ];

      /**
       * On a loaded machine a health probe can miss the 1 s backend timeout and the proxy goes
       * offline for a moment: the online cases start once it says it is online again.
       */
      const online = async () => {
        const last = l.lines.findLastIndex((x) => /upstream (unreachable|reachable again)/.test(x));
        if (last >= 0 && /unreachable/.test(l.lines[last])) {
          await l.waitForLine(/upstream reachable again/, 20_000, last);
        }
      };

      /** A case whose failure also shows what lite-apiserver warned about meanwhile. */
      const step = (t: Deno.TestContext, name: string, fn: () => Promise<void>) =>
        t.step(name, async () => {
          const from = l.lines.length;
          try {
            await fn();
          } catch (e) {
            const warned = l.lines.slice(from).filter((x) => /\b(WARN|ERROR)\b/.test(x)).slice(-6);
            if (!warned.length) throw e;
            throw new Error(`${(e as Error).message}\nlite-apiserver meanwhile:\n${warned.join("\n")}`);
          }
        });

      for (const [i, mode] of MODES.entries()) {
        await t.step(`${mode}: online`, async (t) => {
          api.setWire(mode);
          await online();
          await step(t, "curl: small, list, 404, 403 and list on one connection", async () => {
            const compressed = mode === "gzip";
            const asKubelet = await curlKeepAlive([
              u("/api/v1/namespaces/default/configmaps/small"),
              u("/api/v1/namespaces/bulk/configmaps"),
              u("/api/v1/namespaces/default/configmaps/missing"),
              u("/api/v1/namespaces/bulk/configmaps/cm-007"),
              u("/api/v1/namespaces/bulk/configmaps"),
            ], { ca, auth: kubelet, compressed, what: `${mode}: as kubelet` });
            checkRun(asKubelet, [
              { status: 200, check: isSmall(String(smallVersion)) },
              { status: 200, check: isBulk },
              { status: 404, check: isStatus(404) },
              { status: 200 },
              { status: 200, check: isBulk },
            ]);
            if (mode === "gzip") {
              assertEquals(asKubelet[1].contentEncoding, "gzip", "the large list arrives gzip-encoded");
            }
            const asReader = await curlKeepAlive([
              u("/api/v1/namespaces/default/secrets"),
              u("/api/v1/namespaces/default/configmaps/small"),
              u("/api/v1/namespaces/default/secrets/db-password"),
              u("/api/v1/namespaces/bulk/configmaps"),
            ], { ca, auth: { token: "reader-token" }, compressed, what: `${mode}: as reader` });
            checkRun(asReader, [
              { status: 403, check: isStatus(403) },
              { status: 200, check: isSmall(String(smallVersion)) },
              { status: 403, check: isStatus(403) },
              { status: 200, check: isBulk },
            ]);
          });
          for (const version of VERSIONS) {
            await step(t, `kubectl ${version}: list, get, 404, 403`, async () => {
              await readsWork(mode, version);
              const missing = await kubectlBounded(version, kc, ["get", "configmap", "missing"]);
              assertEquals(missing.code, 1, `kubectl ${version} get missing: ${missing.stderr}`);
              assertMatch(missing.stderr, /NotFound.*configmaps "missing" not found/);
              const denied = await kubectlBounded(version, kcReader, ["get", "secrets"]);
              assertEquals(denied.code, 1, `kubectl ${version} get secrets as reader: ${denied.stderr}`);
              assertMatch(denied.stderr, /Forbidden/);
            });
          }
          const version = VERSIONS[i % VERSIONS.length];
          await step(t, `kubectl ${version} get -w sees a change made in the cloud`, async () => {
            const name = `watched-${mode}`;
            await watchSees(version, kc, name, () =>
              api.create({
                apiVersion: "v1",
                kind: "ConfigMap",
                metadata: { name, namespace: "default" },
                data: { mode },
              }));
          });
        });

        await t.step(`${mode}: across a cut and after restore`, async (t) => {
          api.setWire(mode);
          const version = VERSIONS[(i + 1) % VERSIONS.length];
          // Primed online by the steps above (same identity, same requests).
          const from = l.lines.length;
          await api.setFault("blackhole");
          await l.waitForLine(/upstream unreachable: offline/, 20_000, from);
          await step(t, `offline: kubectl ${version} and curl are served from the cache`, async () => {
            await readsWork(`${mode} offline`, version);
            checkRun(await curlRun(`${mode} offline`, mode === "gzip"), smallListCheck());
          });
          const back = l.lines.length;
          await api.setFault("none");
          await l.waitForLine(/upstream reachable again/, 20_000, back);
          await step(
            t,
            `after restore: kubectl ${version} and curl see a change made in the cloud`,
            async () => {
              const cm = api.get("v1", "ConfigMap", "default", "small")!;
              smallVersion++;
              api.update({ ...cm, data: { version: String(smallVersion) } });
              await readsWork(`${mode} restored`, version);
              checkRun(await curlRun(`${mode} restored`, mode === "gzip"), smallListCheck());
            },
          );
        });
      }
    } finally {
      await lite?.kill();
    }
  },
});

/** Runs `kubectl get configmaps -w`, waits for its first line, makes a change, waits to see it. */
async function watchSees(version: string, kc: string, name: string, change: () => void): Promise<void> {
  const child = new Deno.Command(`${KUBECTL_DIR}/kubectl.${version}`, {
    args: ["--kubeconfig", kc, "get", "configmaps", "-w", "-o", "name"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: {
      HOME: Deno.env.get("HOME") ?? "/root",
      KUBECACHEDIR: `${Deno.env.get("TMPDIR") ?? "/tmp"}/kubectl-cache-${crypto.randomUUID()}`,
    },
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const until = async (re: RegExp, what: string) => {
    const deadline = setTimeout(() => child.kill("SIGKILL"), 15_000);
    try {
      while (!re.test(out)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`kubectl ${version} get -w ended before ${what}; output: ${out}`);
        out += value;
      }
    } finally {
      clearTimeout(deadline);
    }
  };
  try {
    await until(/configmap\/small\n/, "listing configmap/small (killed after 15 s)");
    change();
    await until(new RegExp(`configmap/${name}\\n`), `showing configmap/${name} (killed after 15 s)`);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    throw new Error(`${(e as Error).message}; stderr: ${await stderr}`);
  }
  child.kill("SIGTERM");
  await reader.cancel().catch(() => {});
  await within(child.status, `kubectl ${version} get -w to exit on SIGTERM`);
  await stderr;
}
