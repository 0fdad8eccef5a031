import assert from "node:assert/strict";
import { Emitter } from "./events.ts";
import { configureLog } from "./log.ts";

Deno.test("Emitter: typed events reach every listener in order; a throwing one is logged, not fatal", () => {
  const lines: string[] = [];
  configureLog({ sink: (l) => lines.push(l) });
  const e = new Emitter<{ change: [online: boolean]; pair: [cn: string, serial?: string] }>();
  const seen: string[] = [];
  e.on("change", (online) => seen.push(`a:${online}`));
  e.on("change", () => {
    throw new Error("boom");
  });
  const off = e.on("change", (online) => seen.push(`c:${online}`));
  e.on("pair", (cn, serial) => seen.push(`${cn}:${serial}`));
  e.emit("change", true);
  off();
  e.emit("change", false);
  e.emit("pair", "kubelet", "01");
  assert.deepEqual(seen, ["a:true", "c:true", "a:false", "kubelet:01"]);
  assert.equal(lines.filter((l) => l.includes("event listener failed") && l.includes("boom")).length, 2);
  configureLog({ sink: (l) => console.error(l) });
});
