import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { endToEnd, identityNamedInConnection, preferJson } from "./headers.ts";

Deno.test("endToEnd keeps repeated fields as lists (never joined) and drops hop-by-hop ones", () => {
  const raw = [
    "Host",
    "x",
    "Impersonate-Group",
    "devs",
    "impersonate-group",
    "system:masters",
    "Accept",
    "application/json",
    "Connection",
    "keep-alive, x-hop",
    "X-Hop",
    "gone",
    "Content-Length",
    "2",
    "content-length",
    "2",
    "Authorization",
    "Bearer a",
    "Authorization",
    "Bearer b",
  ];
  const headers = { connection: "keep-alive, x-hop", "impersonate-group": "devs, system:masters" };
  assertEquals(endToEnd(headers, raw), {
    "impersonate-group": ["devs", "system:masters"],
    accept: "application/json",
    "content-length": "2",
    authorization: ["Bearer a", "Bearer b"],
  });
});

Deno.test("a Connection field naming an identity header is found", () => {
  assertEquals(identityNamedInConnection({ connection: "keep-alive, Authorization" }), "authorization");
  assertEquals(
    identityNamedInConnection({ connection: "Impersonate-Extra-Scopes" }),
    "impersonate-extra-scopes",
  );
  assertEquals(identityNamedInConnection({ connection: "Upgrade" }), undefined);
  assertEquals(identityNamedInConnection({}), undefined);
});

Deno.test("preferJson rewrites each Accept field on its own", () => {
  const pb = "application/vnd.kubernetes.protobuf";
  assertEquals(preferJson(`${pb}, application/json`), "application/json");
  assertEquals(preferJson([`${pb},application/json`, "application/yaml"]), [
    "application/json",
    "application/yaml",
  ]);
  assertEquals(preferJson(pb), pb);
});
