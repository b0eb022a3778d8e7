import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeaseIdGenerator } from "./lease-id.js";

describe("LeaseIdGenerator (etcd's idutil layout)", () => {
  it("puts the member's low 16 bits on top and (ms << 8) + count below, as etcd", () => {
    // Member 0x8e9e05c52164694d, 2026-01-01T00:00:00Z: etcd's generator gives
    // prefix 0x694d << 48 and suffix ((ms & (2^40-1)) << 8) + 1, then clears the top bit.
    const ms = Date.UTC(2026, 0, 1);
    const generator = new LeaseIdGenerator(0x8e9e05c52164694dn, ms);
    const expected =
      ((0x694dn << 48n) | (((BigInt(ms) & ((1n << 40n) - 1n)) << 8n) + 1n)) & ((1n << 63n) - 1n);
    assert.equal(generator.next(), expected);
    assert.equal(generator.next(), expected + 1n);
  });

  it("clears the top bit: a member whose low 16 bits start with 1 still gives positive int64s", () => {
    const generator = new LeaseIdGenerator(0xffffn, 1_764_000_000_000);
    const id = generator.next();
    assert.ok(id > 0n && id < 1n << 63n);
    assert.equal(id >> 48n, 0x7fffn);
    assert.ok(id > BigInt(Number.MAX_SAFE_INTEGER), "full 64-bit range, beyond JS numbers");
  });

  it("produces distinct increasing IDs, and a restarted member starts past them", () => {
    const before = new LeaseIdGenerator(7n, 1_764_000_000_000);
    let last = 0n;
    for (let i = 0; i < 10_000; i++) {
      const id = before.next();
      assert.ok(id > last);
      last = id;
    }
    const after = new LeaseIdGenerator(7n, 1_764_000_000_000 + 1_000);
    assert.ok(after.next() > last);
  });

  it("wraps the counter within its 48 bits, never into the member prefix, and never yields 0", () => {
    const generator = new LeaseIdGenerator(0n, 2 ** 40 - 1);
    let id = 0n;
    for (let i = 0; i < 300; i++) id = generator.next();
    assert.ok(id > 0n && id < 1n << 48n);
  });

  it("gives different members different IDs at the same instant", () => {
    assert.notEqual(new LeaseIdGenerator(1n, 5000).next(), new LeaseIdGenerator(2n, 5000).next());
  });
});
