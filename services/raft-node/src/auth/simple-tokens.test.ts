import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SimpleTokens, simpleToken, simpleTokenPrefix } from "./simple-tokens.js";

describe("simple tokens", () => {
  it("have etcd's shape: 16 letters, a dot, the entry index", () => {
    assert.match(simpleToken(simpleTokenPrefix(), 42), /^[a-zA-Z]{16}\.42$/);
    assert.notEqual(simpleTokenPrefix(), simpleTokenPrefix());
  });

  it("live ttl since their last use, and die with their user or with auth", () => {
    let now = 0;
    const tokens = new SimpleTokens(1000, () => now);
    tokens.assign("t1", "alice");
    tokens.assign("t2", "bob");
    now = 900;
    assert.equal(tokens.userOf("t1"), "alice");
    now = 1500;
    assert.equal(tokens.userOf("t1"), "alice", "the use at 900 extended it");
    assert.equal(tokens.userOf("t2"), undefined, "t2 expired at 1000");
    tokens.invalidateUser("alice");
    assert.equal(tokens.userOf("t1"), undefined);
    tokens.assign("t3", "carol");
    tokens.clear();
    assert.equal(tokens.userOf("t3"), undefined);
    tokens.assign("t4", "dave");
    now = 5000;
    tokens.expire();
    assert.equal(tokens.size, 0);
  });
});
