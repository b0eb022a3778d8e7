import assert from "node:assert/strict";
import { describe, it } from "node:test";
import protobuf from "protobufjs";
import { decodeLeaseRecord, encodeLeaseRecord, leaseIdOfKey, leaseKey } from "./lease-record.js";

// etcd's server/lease/leasepb/lease.proto, encoded by an independent implementation.
const LeasePb = protobuf.Root.fromJSON({
  nested: {
    Lease: {
      fields: {
        ID: { type: "int64", id: 1 },
        TTL: { type: "int64", id: 2 },
        RemainingTTL: { type: "int64", id: 3 },
      },
    },
  },
}).lookupType("Lease");

describe("lease records", () => {
  const records = [
    { id: 1n, ttl: 60, remainingTtl: 0 },
    { id: 7_587_000_123_456n, ttl: 9_000_000_000, remainingTtl: 12 },
    // etcd's generator puts member bits on top: IDs use all 63 bits, beyond JS numbers.
    { id: 0x694d_0193_4f5a_7001n, ttl: 5, remainingTtl: 0 },
    { id: 2n ** 63n - 1n, ttl: 5, remainingTtl: 0 },
    { id: -5n, ttl: 2, remainingTtl: 1 },
  ];

  it("encode as leasepb.Lease and decode back", () => {
    for (const record of records) {
      const bytes = encodeLeaseRecord(record);
      const fields: Record<string, number | string> = {};
      if (record.id !== 0n) fields.ID = record.id.toString();
      if (record.ttl !== 0) fields.TTL = record.ttl;
      if (record.remainingTtl !== 0) fields.RemainingTTL = record.remainingTtl;
      assert.deepEqual(bytes, Buffer.from(LeasePb.encode(LeasePb.fromObject(fields)).finish()));
      assert.deepEqual(decodeLeaseRecord(bytes), record);
    }
  });

  it("key leases by their ID in big-endian order, negative IDs included", () => {
    for (const { id } of records) assert.equal(leaseIdOfKey(leaseKey(id)), id);
    assert.ok(Buffer.compare(leaseKey(1n), leaseKey(256n)) < 0);
  });

  it("rejects truncated records", () => {
    assert.throws(() => decodeLeaseRecord(Buffer.from([0x08, 0x80])), /truncated/);
  });
});
