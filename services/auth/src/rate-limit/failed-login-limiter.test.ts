import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FailedLoginLimiter } from "./failed-login-limiter.js";

describe("FailedLoginLimiter", () => {
  const limits = { maxFailures: 3, windowMs: 60_000, maxKeys: 100 };

  it("allows maxFailures failures, then refuses until one failure's share of the window passes", () => {
    const limiter = new FailedLoginLimiter(limits);
    for (let i = 0; i < 3; i++) {
      assert.equal(limiter.retryAfterMs("alice", 1000), 0, `attempt ${i + 1} allowed`);
      limiter.failed("alice", 1000);
    }
    assert.equal(limiter.retryAfterMs("alice", 1000), 20_000);
    assert.equal(limiter.retryAfterMs("alice", 20_999), 1);
    assert.equal(limiter.retryAfterMs("alice", 21_000), 0);
    // One failure's worth came back, not the whole burst.
    limiter.failed("alice", 21_000);
    assert.equal(limiter.retryAfterMs("alice", 21_000), 20_000);
  });

  it("keeps keys apart", () => {
    const limiter = new FailedLoginLimiter(limits);
    for (let i = 0; i < 3; i++) limiter.failed("alice", 0);
    assert.ok(limiter.retryAfterMs("alice", 0) > 0);
    assert.equal(limiter.retryAfterMs("bob", 0), 0);
  });

  it("a success clears the key's failures", () => {
    const limiter = new FailedLoginLimiter(limits);
    for (let i = 0; i < 3; i++) limiter.failed("alice", 0);
    limiter.succeeded("alice");
    assert.equal(limiter.retryAfterMs("alice", 0), 0);
  });

  it("failures while refused never push the wait past one window", () => {
    const limiter = new FailedLoginLimiter(limits);
    for (let i = 0; i < 50; i++) limiter.failed("mallory", 0);
    assert.equal(limiter.retryAfterMs("mallory", 0), 20_000);
    assert.equal(limiter.retryAfterMs("mallory", 20_000), 0);
  });

  it("forgets keys whose budget is full again and never tracks more than maxKeys", () => {
    const limiter = new FailedLoginLimiter({ ...limits, maxKeys: 10 });
    for (let i = 0; i < 100; i++) limiter.failed(`addr-${i}`, 0);
    assert.equal(limiter.trackedKeys, 10);
    // The most recent failures are the ones kept.
    assert.ok(limiter.retryAfterMs("addr-99", 0) === 0 && limiter.trackedKeys === 10);
    limiter.failed("late", 60_001);
    assert.equal(limiter.trackedKeys, 1, "expired budgets were dropped");
  });

  it("refuses nonsensical limits", () => {
    assert.throws(() => new FailedLoginLimiter({ maxFailures: 0, windowMs: 1, maxKeys: 1 }), RangeError);
  });
});
