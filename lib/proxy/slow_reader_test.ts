import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { configureLog } from "../log.ts";
import { logSlowReader } from "./slow_reader.ts";

Deno.test("slow readers are logged at most once per 10 s and kind, with how many were not", () => {
  const lines: string[] = [];
  configureLog({ sink: (l) => lines.push(l), level: "info", format: "text" });
  try {
    const fields = { path: "/api/v1/pods", identity: "cn=system:node:edge-1", buffered: 5 };
    const watch = { kind: "watch", reason: "bytes" } as const;
    const t0 = 1e9;
    assert(logSlowReader(watch, fields, t0));
    for (let i = 1; i <= 1000; i++) assert(!logSlowReader(watch, fields, t0 + i));
    // Another kind of problem has its own line.
    assert(logSlowReader({ kind: "answer", reason: "time" }, fields, t0 + 5));
    assert(logSlowReader(watch, fields, t0 + 10_001));
    assertEquals(lines.length, 3);
    assert(lines[0].includes("watch ended") && lines[0].includes('reason="buffer full"'), lines[0]);
    assert(lines[1].includes("answer cut") && lines[1].includes('reason="no progress"'), lines[1]);
    assert(lines[2].includes("more-since-last-line=1000"), lines[2]);
  } finally {
    configureLog({ sink: (l) => console.error(l) });
  }
});
