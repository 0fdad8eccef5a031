/** Frame codec: frames split at every byte boundary read the same; oversized frames are refused early. */
import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import {
  encodeFrame,
  encodeGoaway,
  encodeSettings,
  type Frame,
  FrameReader,
  FrameType,
  H2Error,
  parseGoaway,
  parseSettings,
  unpad,
} from "./frame.ts";

const frames = (): Uint8Array[] => [
  encodeSettings([[3, 100], [4, 1 << 20]]),
  encodeFrame(FrameType.HEADERS, 0x4, 1, Uint8Array.of(0x88)),
  encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(0)),
  encodeFrame(FrameType.DATA, 0x9, 3, Uint8Array.of(2, 0x61, 0x62, 0, 0)),
  encodeGoaway(7, 0, "bye"),
];

function readAll(parts: Uint8Array[], max = 16_384): Frame[] {
  const got: Frame[] = [];
  const r = new FrameReader(max, (f) => got.push({ ...f, payload: f.payload.slice() }));
  for (const p of parts) r.feed(p);
  return got;
}

Deno.test("frames split at every byte boundary (and byte by byte) read as the whole stream does", () => {
  const all = Uint8Array.from(frames().flatMap((f) => [...f]));
  const whole = readAll([all]);
  assertEquals(whole.length, 5);
  for (let i = 0; i <= all.byteLength; i++) {
    assertEquals(readAll([all.subarray(0, i), all.subarray(i)]), whole);
  }
  assertEquals(readAll([...all].map((b) => Uint8Array.of(b))), whole);
  assertEquals(parseSettings(whole[0]), [[3, 100], [4, 1 << 20]]);
  assertEquals(new TextDecoder().decode(unpad(whole[3])), "ab");
  assertEquals(parseGoaway(whole[4]), { lastStream: 7, code: 0, debug: "bye" });
});

Deno.test("a frame over the max frame size is a FRAME_SIZE_ERROR before its payload is buffered", () => {
  const r = new FrameReader(100, () => {});
  const head = encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(101)).subarray(0, 9);
  assertThrows(() => r.feed(head), (e: unknown) => e instanceof H2Error && e.h2code === 6);
  assertEquals(r.buffered, 9);
});

Deno.test("malformed control frames are errors", () => {
  const bad = (f: Uint8Array) => readAll([f])[0];
  assertThrows(() => parseSettings(bad(encodeFrame(FrameType.SETTINGS, 0, 0, new Uint8Array(5)))), H2Error);
  assertThrows(() => parseSettings(bad(encodeFrame(FrameType.SETTINGS, 0, 1, new Uint8Array(6)))), H2Error);
  assertThrows(() => parseSettings(bad(encodeSettings([[4, 0x80000000]]))), /INITIAL_WINDOW_SIZE/);
  assertThrows(() => parseSettings(bad(encodeSettings([[5, 100]]))), /MAX_FRAME_SIZE/);
  assertThrows(() => unpad(bad(encodeFrame(FrameType.DATA, 0x8, 1, Uint8Array.of(5, 1)))), /padding/);
  assertThrows(() => parseGoaway(bad(encodeFrame(FrameType.GOAWAY, 0, 0, new Uint8Array(4)))), /short/);
});
