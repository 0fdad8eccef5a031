import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { LineSplitter } from "./line_splitter.ts";

const enc = new TextEncoder();

Deno.test("LineSplitter: whole lines out, `holding` while a line is unfinished", () => {
  const lines: string[] = [];
  const s = new LineSplitter(100, (l) => lines.push(l), () => {});
  s.push(enc.encode('{"a":1}\n{"b"'));
  assertEquals([lines, s.holding], [['{"a":1}'], true]);
  s.push(enc.encode(":2}\n"));
  assertEquals([lines, s.holding], [['{"a":1}', '{"b":2}'], false]);
});

Deno.test("LineSplitter: a line over the limit stops the splitting", () => {
  let overflow = 0;
  const s = new LineSplitter(4, () => {}, (n) => overflow = n);
  s.push(enc.encode("123456"));
  assertEquals([s.stopped, s.holding, overflow], [true, false, 6]);
});
