// A real @kubernetes/client-node informer (list + watch reflector) on the default namespace's
// configmaps, run under Node. Prints one JSON line per event; on stdin "dump <tag>" prints the
// informer's cache, "list <tag>" does a plain LIST. Restarts after an error, as the library's documentation shows.
// Usage: node informer_node.mjs <path to @kubernetes/client-node/dist/index.js> <kubeconfig>
import { pathToFileURL } from "node:url";
import { createInterface } from "node:readline";

const [entry, kubeconfig] = process.argv.slice(2);
const k8s = await import(pathToFileURL(entry).href);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
const api = kc.makeApiClient(k8s.CoreV1Api);
const informer = k8s.makeInformer(
  kc,
  "/api/v1/namespaces/default/configmaps",
  () => api.listNamespacedConfigMap({ namespace: "default" }),
);
const data = (o) => JSON.stringify(o.data ?? {});
informer.on("add", (o) => out({ event: "add", name: o.metadata.name, data: data(o) }));
informer.on("update", (o) => out({ event: "update", name: o.metadata.name, data: data(o) }));
informer.on("delete", (o) => out({ event: "delete", name: o.metadata.name }));
informer.on("connect", () => out({ event: "connect" }));
informer.on("error", (e) => {
  out({ event: "error", message: String(e?.message ?? e).slice(0, 300) });
  setTimeout(() => informer.start().catch((err) => out({ event: "error", message: String(err) })), 300);
});
createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, tag] = line.trim().split(" ");
  if (cmd === "dump") {
    const items = informer.list("default").map((o) => ({ name: o.metadata.name, data: data(o) }));
    out({ event: "dump", tag, items: items.sort((a, b) => a.name.localeCompare(b.name)) });
  } else if (cmd === "list") {
    // A plain LIST through the same library (and configuration) as the informer.
    api.listNamespacedConfigMap({ namespace: "default" }).then(
      (l) => out({ event: "list", tag, names: l.items.map((o) => o.metadata.name).sort() }),
      (e) => out({ event: "list", tag, error: String(e?.message ?? e).slice(0, 300) }),
    );
  }
});
await informer.start();
out({ event: "started" });
