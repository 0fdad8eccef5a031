import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { resumedUrl } from "./watch_resume.ts";

Deno.test("resumedUrl: same watch from the client's last version, initial events not repeated", () => {
  const url = "/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan" +
    "&allowWatchBookmarks=true&labelSelector=app%3Dx&resourceVersion=";
  const q = new URLSearchParams(resumedUrl(url, "42", 0, 0).split("?")[1]);
  assertEquals(q.get("resourceVersion"), "42");
  assertEquals(q.get("watch"), "true");
  assertEquals([q.has("sendInitialEvents"), q.has("resourceVersionMatch")], [false, false]);
  assertEquals([q.get("allowWatchBookmarks"), q.get("labelSelector")], ["true", "app=x"]);
  assertEquals(resumedUrl("/api/v1/pods", "7", 0, 0), "/api/v1/pods?resourceVersion=7&watch=true");
});

Deno.test("resumedUrl: timeoutSeconds is what the client has left (at least 1 s)", () => {
  const at = (elapsedMs: number) =>
    new URLSearchParams(resumedUrl("/api/v1/pods?watch=1&timeoutSeconds=300", "1", 1000, 1000 + elapsedMs))
      .get("timeoutSeconds");
  assertEquals([at(0), at(100_500), at(400_000)], ["300", "200", "1"]);
});
