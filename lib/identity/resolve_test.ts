import { deepStrictEqual as assertEquals, notDeepStrictEqual } from "node:assert/strict";
import { resolveIdentity } from "./resolve.ts";
import { pairIdentity } from "./identity.ts";
import type { Peer } from "../listener/https_listener.ts";

const NO_CERT: Peer = { presented: false, verified: false, cn: "", groups: [], serial: "" };
const cert = (cn: string, groups: string[], verified = true): Peer => ({
  presented: true,
  verified,
  cn,
  groups,
  serial: "01",
});
const kubelet = { cn: "system:node:edge-1", groups: ["system:nodes"] };
const hasPair = (cn: string, groups: string[]) =>
  pairIdentity(cn, groups) === pairIdentity(kubelet.cn, kubelet.groups);
const req = (headers: Record<string, string> = {}) => ({
  headers,
  rawHeaders: Object.entries(headers).flat(),
});

Deno.test("a certificate gets a pair only with the same CN and the same set of groups", () => {
  assertEquals(resolveIdentity(cert(kubelet.cn, ["system:nodes"]), req(), hasPair).kind, "cert");
  assertEquals(
    resolveIdentity(cert(kubelet.cn, ["system:nodes", "system:nodes"]), req(), hasPair).kind,
    "cert",
  );
  // Groups escalate: the same CN with other groups is someone else.
  for (const groups of [[], ["viewers"], ["system:nodes", "viewers"], ["system:masters"]]) {
    assertEquals(resolveIdentity(cert(kubelet.cn, groups), req(), hasPair).kind, "anonymous", groups.join());
  }
  assertEquals(resolveIdentity(cert(kubelet.cn, ["system:nodes"], false), req(), hasPair).kind, "anonymous");
});

Deno.test("pairIdentity ignores group order and repeats, not membership", () => {
  assertEquals(pairIdentity("a", ["x", "y"]), pairIdentity("a", ["y", "x", "y"]));
  notDeepStrictEqual(pairIdentity("a", ["x"]), pairIdentity("a", ["x", "y"]));
  notDeepStrictEqual(pairIdentity("a,b", []), pairIdentity("a", ["b"]));
});

Deno.test("token identity follows the apiserver's parsing; uncertain credentials get no cache id", () => {
  const a = resolveIdentity(NO_CERT, req({ authorization: "Bearer tok extra" }), hasPair);
  const b = resolveIdentity(NO_CERT, req({ authorization: "bearer tok" }), hasPair);
  assertEquals(a.kind, "token");
  assertEquals(a.cacheId, b.cacheId);
  const u = resolveIdentity(NO_CERT, req({ authorization: "Basic x" }), hasPair);
  assertEquals([u.kind, u.cacheId], ["uncertain", ""]);
  assertEquals(resolveIdentity(NO_CERT, req(), hasPair).cacheId, "anonymous");
  // A matching certificate decides before any header, as in the apiserver's authenticator union.
  assertEquals(
    resolveIdentity(cert(kubelet.cn, ["system:nodes"]), req({ authorization: "Basic x" }), hasPair).kind,
    "cert",
  );
});

Deno.test("a CN becomes one cache-key segment that cannot spell a marker", () => {
  const hasAny = () => true;
  const id = resolveIdentity(cert("a~imp=x/..", []), req(), hasAny);
  assertEquals(id.cacheId, "cn~a%7Eimp%3Dx%2F..");
});

Deno.test("impersonation is read per field, as forwarded: one field 'a, b' is not two fields a and b", () => {
  const raw = (...kv: string[]) => ({ headers: {}, rawHeaders: kv });
  const id = (r: { headers: Record<string, string>; rawHeaders: string[] }) =>
    resolveIdentity(NO_CERT, r, hasPair).cacheId;
  const two = id(raw("Impersonate-User", "x", "Impersonate-Group", "a", "Impersonate-Group", "b"));
  const one = id(raw("Impersonate-User", "x", "Impersonate-Group", "a, b"));
  notDeepStrictEqual(two, one);
  // Names compare case-insensitively, field order within a name counts, order across names does not.
  assertEquals(id(raw("impersonate-group", "a", "IMPERSONATE-GROUP", "b", "Impersonate-User", "x")), two);
  notDeepStrictEqual(
    id(raw("Impersonate-User", "x", "Impersonate-Group", "b", "Impersonate-Group", "a")),
    two,
  );
  // No separator a value can forge.
  notDeepStrictEqual(
    id(raw("Impersonate-User", 'x","impersonate-group",["a')),
    id(raw("Impersonate-User", "x", "Impersonate-Group", "a")),
  );
  assertEquals(id(raw()), "anonymous");
});
