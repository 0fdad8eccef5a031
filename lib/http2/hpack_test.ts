/** HPACK against RFC 7541 appendix C (every example), plus the decoder's bounds. */
import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { type HeaderField, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { huffmanDecode, huffmanEncode } from "./huffman.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("C.2: literal representations", () => {
  let d = new HpackDecoder();
  assertEquals(d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")), [[
    "custom-key",
    "custom-header",
  ]]);
  assertEquals(d.tableSize, 55);
  d = new HpackDecoder();
  assertEquals(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [[":path", "/sample/path"]]);
  assertEquals(d.tableSize, 0);
  assertEquals(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [["password", "secret"]]);
  assertEquals(d.tableSize, 0);
  assertEquals(d.decode(hex("82")), [[":method", "GET"]]);
});

const REQ: HeaderField[][] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], [
    "cache-control",
    "no-cache",
  ]],
  [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], [
    "custom-key",
    "custom-value",
  ]],
];
const C3 = [
  "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "8286 84be 5808 6e6f 2d63 6163 6865",
  "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];
const C4 = [
  "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
  "8286 84be 5886 a8eb 1064 9cbf",
  "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];
const TABLE_AFTER_REQ: HeaderField[] = [
  ["custom-key", "custom-value"],
  ["cache-control", "no-cache"],
  [":authority", "www.example.com"],
];

for (const [name, blocks, huffman] of [["C.3", C3, false], ["C.4", C4, true]] as const) {
  Deno.test(`${name}: requests decode, and encode to the same bytes`, () => {
    const d = new HpackDecoder();
    const e = new HpackEncoder(4096, huffman);
    blocks.forEach((b, i) => {
      assertEquals(d.decode(hex(b)), REQ[i]);
      assertEquals(toHex(e.encode(REQ[i])), b.replace(/\s+/g, ""));
    });
    assertEquals(d.entries, TABLE_AFTER_REQ);
    assertEquals(d.tableSize, 164);
    assertEquals(e.entries, TABLE_AFTER_REQ);
  });
}

const RES: HeaderField[][] = [
  [[":status", "302"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], [
    "location",
    "https://www.example.com",
  ]],
  [[":status", "307"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], [
    "location",
    "https://www.example.com",
  ]],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
    ["location", "https://www.example.com"],
    ["content-encoding", "gzip"],
    ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
  ],
];
const C5 = [
  "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "4803 3330 37c1 c0bf",
  "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
];
const C6 = [
  "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
  "4883 640e ffc1 c0bf",
  "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
];
for (const [name, blocks, huffman] of [["C.5", C5, false], ["C.6", C6, true]] as const) {
  Deno.test(`${name}: responses with a 256-byte table (evictions) decode, and encode to the same bytes`, () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    const e = new HpackEncoder(256, huffman);
    blocks.forEach((b, i) => {
      assertEquals(d.decode(hex(b)), RES[i]);
      assertEquals(toHex(e.encode(RES[i])), b.replace(/\s+/g, ""));
    });
    assertEquals(d.entries, [RES[2][5], RES[2][4], RES[2][2]]);
    assertEquals(d.tableSize, 215);
  });
}

Deno.test("Huffman: every byte value round-trips; strict padding and EOS rules", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assertEquals(huffmanDecode(huffmanEncode(all), 1024), all);
  // "a" is 00011 (5 bits): 3 padding bits must be ones.
  assertEquals(huffmanDecode(Uint8Array.of(0b00011111), 10), Uint8Array.of(0x61));
  assertThrows(() => huffmanDecode(Uint8Array.of(0b00011110), 10), /padding/);
  // A whole byte of ones is padding longer than 7 bits.
  assertThrows(() => huffmanDecode(Uint8Array.of(0b00011111, 0xff), 10), /padding/);
  // EOS (30 ones) inside a string.
  assertThrows(() => huffmanDecode(Uint8Array.of(0xff, 0xff, 0xff, 0xfc), 10), /EOS/);
  assertThrows(() => huffmanDecode(huffmanEncode(all), 100), /too long/);
});

Deno.test("decoder: bounds and malformed blocks are errors", () => {
  const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 100 });
  // A literal whose value alone is over the list bound.
  const big = new HpackEncoder(0, false).encode([["x", "y".repeat(200)]]);
  assertThrows(() => d.decode(big), HpackError);
  // Index out of range, index 0, truncated string, integer overflow.
  assertThrows(() => new HpackDecoder().decode(hex("ff00")), /beyond/);
  assertThrows(() => new HpackDecoder().decode(hex("80")), /index 0/);
  assertThrows(() => new HpackDecoder().decode(hex("400a 6375")), /truncated/);
  assertThrows(() => new HpackDecoder().decode(hex("ff ff ff ff ff ff 7f")), /too large/);
  // A table size update over what we announced, or after a field.
  assertThrows(() => new HpackDecoder({ maxTableSize: 100 }).decode(hex("3f 46")), /over the announced/);
  assertThrows(() => new HpackDecoder().decode(hex("82 20")), /after a field/);
  // Many small fields add up past the list bound (32 bytes of overhead each).
  const many = new HpackDecoder({ maxHeaderListSize: 32 * 10 });
  assertThrows(() => many.decode(Uint8Array.from({ length: 20 }, () => 0x82)), /too large/);
});

Deno.test("encoder: a table size change is announced first; sensitive fields are never indexed", () => {
  const e = new HpackEncoder();
  e.setMaxTableSize(0);
  e.setMaxTableSize(100);
  const d = new HpackDecoder();
  const fields: HeaderField[] = [["authorization", "Bearer t"], ["x-a", "1"]];
  const block = e.encode(fields, { sensitive: (n) => n === "authorization" });
  assertEquals(block[0], 0x20); // size 0 first
  assertEquals(d.decode(block), fields);
  assertEquals(d.entries, [["x-a", "1"]]);
  assertEquals(d.table.maxSize, 100);
});

Deno.test("encoder and decoder reuse their scratch: earlier results stay intact; blocks and strings beyond it round-trip", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const first: HeaderField[] = [[":status", "200"], ["x-a", "first value"], ["authorization", "Bearer one"]];
  const a = e.encode(first, { sensitive: (n) => n === "authorization" });
  const aCopy = a.slice();
  const fa = d.decode(a);
  // A second block, larger than the 4 KiB scratch, with a long Huffman-coded and a raw value.
  const big = "x".repeat(6000);
  const raw = "\u00ff".repeat(5000); // no shorter in Huffman: sent raw
  const second: HeaderField[] = [["x-big", big], ["x-raw", raw], ["x-a", "second"]];
  const b = e.encode(second);
  assertEquals(a, aCopy, "the first block is not overwritten by the second");
  assertEquals(fa, first);
  assertEquals(d.decode(b), second);
  assertEquals(fa, first, "decoded strings are not views of the scratch");
  // A long Huffman string within a small header-list bound is refused.
  const small = new HpackDecoder({ maxHeaderListSize: 100 });
  assertThrows(() => small.decode(new HpackEncoder().encode([["x-big", big]])), HpackError);
});
