import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeIndexFields, decodeKeyValue, encodeKeyValue, keyOfEncodedKeyValue } from "./kv-codec.js";
import { isTombstoneKey, mainOfKey, revisionKey, subOfKey } from "./revision.js";
import type { KeyValue } from "./types.js";

describe("KeyValue protobuf codec", () => {
  it("round-trips, omitting zero fields as gogoproto does", () => {
    const kv: KeyValue = {
      key: Buffer.from("k"),
      createRevision: 300,
      modRevision: 2 ** 40 + 5,
      version: 1,
      value: Buffer.alloc(200, 1),
      lease: 2n ** 53n - 1n,
    };
    assert.deepEqual(decodeKeyValue(encodeKeyValue(kv)), kv);
    const tombstone = encodeKeyValue({
      key: Buffer.from("gone"),
      createRevision: 0,
      modRevision: 0,
      version: 0,
      value: Buffer.alloc(0),
      lease: 0n,
    });
    assert.equal(tombstone.toString("hex"), "0a04676f6e65");
  });

  it("encodes negative int64 as ten bytes and reads them back", () => {
    const kv: KeyValue = {
      key: Buffer.from("k"),
      createRevision: 1,
      modRevision: 1,
      version: 1,
      value: Buffer.alloc(0),
      lease: -2n,
    };
    const bytes = encodeKeyValue(kv);
    assert.equal(bytes.subarray(bytes.length - 11).toString("hex"), "30feffffffffffffffff01");
    assert.equal(decodeKeyValue(bytes).lease, -2n);
  });

  it("reads only the index fields for restore", () => {
    const bytes = encodeKeyValue({
      key: Buffer.from([0xff, 0x00, 0x61]),
      createRevision: 7,
      modRevision: 9,
      version: 3,
      value: Buffer.from("v"),
      lease: 4n,
    });
    const fields = decodeIndexFields(bytes, { key: "", createRevision: 0, version: 0, lease: 0n });
    assert.deepEqual(fields, { key: "\xff\x00a", createRevision: 7, version: 3, lease: 4n });
    assert.throws(() => decodeKeyValue(bytes.subarray(0, 3)));
  });

  it("reads the key alone, wherever the field sits", () => {
    const kv = { key: Buffer.from([0xff, 0x00, 0x61]), createRevision: 7, modRevision: 9, version: 3 };
    const bytes = encodeKeyValue({ ...kv, value: Buffer.from("v"), lease: 4n });
    assert.equal(keyOfEncodedKeyValue(bytes), "\xff\x00a");
    // Another encoder may put varint fields first (protobuf allows any order).
    const reordered = Buffer.concat([Buffer.from([0x10, 0x87, 0x01]), bytes]);
    assert.equal(keyOfEncodedKeyValue(reordered), "\xff\x00a");
    assert.throws(() => keyOfEncodedKeyValue(bytes.subarray(0, 3)));
  });
});

describe("revision keys", () => {
  it("are etcd's 17 bytes (18 with the tombstone mark) and sort by revision", () => {
    const key = revisionKey(2 ** 33 + 1, 3);
    assert.equal(key.toString("hex"), "0000000200000001" + "5f" + "0000000000000003");
    const tomb = revisionKey(5, 0, true);
    assert.equal(tomb.length, 18);
    assert.equal(isTombstoneKey(tomb), true);
    assert.equal(isTombstoneKey(key), false);
    assert.deepEqual([mainOfKey(key), subOfKey(key)], [2 ** 33 + 1, 3]);
    const ordered = [revisionKey(1, 5), revisionKey(2, 0, true), revisionKey(2, 1), revisionKey(256, 0)];
    const sorted = [...ordered].sort(Buffer.compare);
    assert.deepEqual(sorted, ordered);
  });
});
