import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { configureLog, log, REPEAT_WINDOW_MS } from "../log.ts";
import { logSlowReader } from "./slow_reader.ts";

Deno.test("slow readers are logged once per window and kind, through the rate-limited logger", () => {
  const lines: string[] = [];
  configureLog({ sink: (l) => lines.push(l), level: "info", format: "text", repeatWindowMs: 60_000 });
  try {
    const fields = { path: "/api/v1/pods", identity: "cn=system:node:edge-1", buffered: 5 };
    const watch = { kind: "watch", reason: "bytes" } as const;
    for (let i = 0; i < 1000; i++) logSlowReader(watch, fields);
    // Another kind of problem has its own line.
    logSlowReader({ kind: "answer", reason: "time" }, fields);
    assertEquals(lines.length, 2);
    assert(lines[0].includes("watch ended") && lines[0].includes('reason="buffer full"'), lines[0]);
    assert(lines[1].includes("answer cut") && lines[1].includes('reason="no progress"'), lines[1]);
    // The 999 suppressed ones are summarised (at the window's end, or at shutdown).
    log.flush();
    assert(lines.some((l) => l.includes("watch ended") && l.includes("repeated=999")), lines.join("\n"));
  } finally {
    configureLog({ sink: (l) => console.error(l), repeatWindowMs: REPEAT_WINDOW_MS });
  }
});
