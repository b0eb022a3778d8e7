import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeaseIdGenerator } from "./lease-id.js";

describe("LeaseIdGenerator", () => {
  it("produces distinct positive safe integers, increasing, prefixed by the member", () => {
    const generator = new LeaseIdGenerator(0x1234_5678_9abc, 1_764_000_000_000);
    let previous = 0;
    for (let i = 0; i < 10_000; i++) {
      const id = generator.next();
      assert.ok(Number.isSafeInteger(id) && id > previous);
      assert.equal(Math.floor(id / 2 ** 45), 0x1234_5678_9abc % 256);
      previous = id;
    }
  });

  it("starts a restarted member past the IDs it generated before", () => {
    const before = new LeaseIdGenerator(7, 1_764_000_000_000);
    let last = 0;
    for (let i = 0; i < 100; i++) last = before.next();
    const after = new LeaseIdGenerator(7, 1_764_000_000_001);
    assert.ok(after.next() > last);
  });

  it("gives different members different IDs at the same instant", () => {
    const a = new LeaseIdGenerator(1, 5000);
    const b = new LeaseIdGenerator(2, 5000);
    assert.notEqual(a.next(), b.next());
  });
});
