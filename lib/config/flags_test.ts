/** One flag table drives parsing, help and defaults. */
import { deepStrictEqual as assertEquals, match as assertMatch, throws } from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { defaultOf, type Flag, flagValue, helpText, parseFlags } from "./flags.ts";

const TABLE: Flag[] = [
  { name: "port", arg: "PORT", help: "listen port", default: "51003" },
  { name: "url", arg: "URL", help: "upstream; repeatable", repeatable: true },
  { name: "dry-run", help: "write nothing" },
  { name: "timeout", arg: "D", help: "legacy alias", hidden: true },
];

const fails = (args: string[], re: RegExp) =>
  throws(() => parseFlags("demo", TABLE, args), (e) => e instanceof ConfigError && re.test(e.message));

Deno.test("values, inline values, switches, repeats and defaults", () => {
  const p = parseFlags("demo", TABLE, ["--url", "a", "--url=b", "--dry-run", "--port=1", "--port", "2"]);
  assertEquals([...p.given], [["url", ["a", "b"]], ["dry-run", ["true"]], ["port", ["2"]]]);
  assertEquals(flagValue(TABLE, p, "port"), "2", "the last value of a single flag wins");
  const none = parseFlags("demo", TABLE, []);
  assertEquals([flagValue(TABLE, none, "port"), flagValue(TABLE, none, "url"), none.help], [
    "51003",
    undefined,
    false,
  ]);
  assertEquals(defaultOf(TABLE, "port"), "51003");
  assertEquals(
    parseFlags("demo", TABLE, ["--timeout", "3s"]).given.get("timeout"),
    ["3s"],
    "hidden is accepted",
  );
  assertEquals(parseFlags("demo", TABLE, ["--port", "1", "-h"]).help, true);
});

Deno.test("mistakes are one-line ConfigErrors", () => {
  fails(["--bogus"], /^demo: unknown flag "--bogus" \(see lite-apiserver demo --help\)$/);
  fails(["--port"], /^demo: --port needs a value \(PORT\)$/);
  fails(["--port="], /^demo: --port needs a value/);
  fails(["--dry-run=yes"], /^demo: --dry-run takes no value$/);
  fails(["serve"], /^demo: unexpected argument "serve" \(flags start with --\)$/);
});

Deno.test("help lists every visible flag with its placeholder and default", () => {
  const text = helpText("Usage: demo [flags]\n", TABLE);
  assertEquals(text.split("\n").slice(0, 3), ["Usage: demo [flags]", "", "Flags:"]);
  assertMatch(text, /^ {2}--port PORT +listen port \(default 51003\)$/m);
  assertMatch(text, /^ {2}--url URL +upstream; repeatable$/m);
  assertMatch(text, /^ {2}--dry-run +write nothing$/m);
  assertMatch(text, /^ {2}-h, --help +this help$/m);
  assertEquals(text.includes("--timeout"), false, "hidden flags stay out of help");
});
