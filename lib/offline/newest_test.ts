import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { isNewer, newest } from "./newest.ts";

Deno.test("newest: integer resourceVersions compare as numbers, not strings", () => {
  assertEquals(
    isNewer({ resourceVersion: "10", writtenAt: 1 }, { resourceVersion: "9", writtenAt: 2 }),
    true,
  );
  assertEquals(
    isNewer({ resourceVersion: "9", writtenAt: 2 }, { resourceVersion: "10", writtenAt: 1 }),
    false,
  );
  // Beyond 2^53: still exact.
  assertEquals(
    isNewer({ resourceVersion: "9007199254740993", writtenAt: 0 }, {
      resourceVersion: "9007199254740992",
      writtenAt: 5,
    }),
    true,
  );
});

Deno.test("newest: when versions cannot be compared, the most recently written wins", () => {
  assertEquals(
    isNewer({ resourceVersion: "abc", writtenAt: 2 }, { resourceVersion: "5", writtenAt: 1 }),
    true,
  );
  assertEquals(isNewer({ resourceVersion: "", writtenAt: 1 }, { resourceVersion: "5", writtenAt: 2 }), false);
  assertEquals(isNewer({ resourceVersion: "7", writtenAt: 3 }, { resourceVersion: "7", writtenAt: 2 }), true);
});

Deno.test("newest: picks across several copies, first of equals, undefined for none", () => {
  const copies = [
    { id: "get", resourceVersion: "100", writtenAt: 50 },
    { id: "list", resourceVersion: "120", writtenAt: 10 },
    { id: "other", resourceVersion: "120", writtenAt: 10 },
    { id: "older", resourceVersion: "99", writtenAt: 99 },
  ];
  assertEquals(newest(copies)?.id, "list");
  assertEquals(newest([]), undefined);
});
