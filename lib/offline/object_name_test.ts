/** Reading metadata.name from request bodies, against real wire bytes from Kubernetes' serializers. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { objectName, protobufRaw } from "./object_name.ts";

const DATA = new URL("../../../shared/k8s-testdata/", import.meta.url);

Deno.test("metadata.name from real protobuf and JSON bodies", async () => {
  for (const type of ["core.v1.Node", "core.v1.ConfigMap", "core.v1.Pod", "coordination.k8s.io.v1.Lease"]) {
    const json = JSON.parse(await Deno.readTextFile(new URL(`${type}.json`, DATA)));
    const pb = await Deno.readFile(new URL(`${type}.pb`, DATA));
    assertEquals(objectName("application/vnd.kubernetes.protobuf", pb), json.metadata.name, type);
    assertEquals(
      objectName("application/json", new TextEncoder().encode(JSON.stringify(json))),
      json.metadata.name,
    );
  }
});

Deno.test("bodies that are not Kubernetes objects give no name, never an exception", () => {
  assertEquals(protobufRaw(new Uint8Array([1, 2, 3])), undefined);
  assertEquals(
    objectName("application/vnd.kubernetes.protobuf", new Uint8Array([0x6b, 0x38, 0x73, 0, 0x12, 0x7f])),
    undefined,
  );
  assertEquals(objectName("application/json", new TextEncoder().encode("{not json")), undefined);
  assertEquals(
    objectName("application/json", new TextEncoder().encode('{"metadata":{"name":7}}')),
    undefined,
  );
});
