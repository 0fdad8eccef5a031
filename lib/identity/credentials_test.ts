import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { bearerFromAuthorization, readCredential, websocketToken } from "./credentials.ts";

const b64 = (s: string) => btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
const req = (headers: Record<string, string | string[]>) => {
  const rawHeaders: string[] = [];
  for (const [k, v] of Object.entries(headers)) for (const x of [v].flat()) rawHeaders.push(k, x);
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) merged[k] = [v].flat()[0];
  return { headers: merged, rawHeaders };
};
const ws = (protocols: string) => ({
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-protocol": protocols,
});

Deno.test("Authorization is read as the apiserver's bearer authenticator reads it", () => {
  const token = (t: string) => ({ kind: "token", token: t });
  assertEquals(bearerFromAuthorization("Bearer tok"), token("tok"));
  assertEquals(bearerFromAuthorization("bearer tok"), token("tok"));
  assertEquals(bearerFromAuthorization("BEARER tok"), token("tok"));
  // The second field is the token: trailing fields do not change who it is.
  assertEquals(bearerFromAuthorization("Bearer tok extra"), token("tok"));
  assertEquals(bearerFromAuthorization("Bearer tok extra more"), token("tok"));
  assertEquals(bearerFromAuthorization("  Bearer tok  "), token("tok"));
  assertEquals(bearerFromAuthorization(""), { kind: "none" });
  assertEquals(bearerFromAuthorization("   "), { kind: "none" });
  for (
    const v of [
      "Basic dXNlcjpwYXNz",
      "Bearer",
      "Bearer  tok", // two spaces: the apiserver sees an empty token
      "Bearer\ttok", // a tab is not a separator to the apiserver
      "Token tok",
      "Bearer tök",
      "Bearer tok\x01",
    ]
  ) {
    assertEquals(bearerFromAuthorization(v).kind, "uncertain", JSON.stringify(v));
  }
});

Deno.test("an uncertain reason never repeats a credential", () => {
  const r = bearerFromAuthorization("sekrit-token-value");
  assertEquals(r, { kind: "uncertain", reason: "Authorization scheme is not Bearer" });
  assertEquals(bearerFromAuthorization("Basic abc"), {
    kind: "uncertain",
    reason: 'Authorization scheme "Basic" is not Bearer',
  });
});

Deno.test("WebSocket bearer subprotocol, as the websocket protocol authenticator reads it", () => {
  const p = `base64url.bearer.authorization.k8s.io.${b64("tok")}`;
  assertEquals(websocketToken(ws(`${p}, v4.channel.k8s.io`)), { kind: "token", token: "tok" });
  assertEquals(websocketToken(ws(`v4.channel.k8s.io,${p}`)), { kind: "token", token: "tok" });
  // Not a WebSocket upgrade: the subprotocol is not a credential.
  assertEquals(websocketToken({ "sec-websocket-protocol": `${p}, v4.channel.k8s.io` }), { kind: "none" });
  assertEquals(websocketToken(ws("v4.channel.k8s.io")), { kind: "none" });
  for (
    const v of [
      p, // no other subprotocol
      `${p}, ${p}, v4.channel.k8s.io`, // several tokens
      "base64url.bearer.authorization.k8s.io.a*b, v4.channel.k8s.io", // not base64url
      `base64url.bearer.authorization.k8s.io.${b64("tok")}==, v4.channel.k8s.io`, // padded
      "base64url.bearer.authorization.k8s.io./w, v4.channel.k8s.io", // not UTF-8
      "base64url.bearer.authorization.k8s.io., v4.channel.k8s.io", // empty token
    ]
  ) {
    assertEquals(websocketToken(ws(v)).kind, "uncertain", v);
  }
});

Deno.test("several Authorization headers, or header and subprotocol disagreeing, are uncertain", () => {
  assertEquals(readCredential(req({ authorization: ["Bearer a", "Bearer a"] })).kind, "uncertain");
  assertEquals(readCredential(req({ authorization: "Bearer a" })), { kind: "token", token: "a" });
  assertEquals(readCredential(req({})), { kind: "none" });
  const p = (t: string) => `base64url.bearer.authorization.k8s.io.${b64(t)}, v4.channel.k8s.io`;
  assertEquals(readCredential(req({ ...ws(p("a")), authorization: "Bearer b" })).kind, "uncertain");
  assertEquals(readCredential(req({ ...ws(p("a")), authorization: "Bearer a" })), {
    kind: "token",
    token: "a",
  });
  assertEquals(readCredential(req(ws(p("a")))), { kind: "token", token: "a" });
  assertEquals(readCredential(req({ ...ws(p("a")), authorization: "Basic x" })).kind, "uncertain");
});
