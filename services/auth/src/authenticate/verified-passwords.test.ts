import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VerifiedPasswords } from "./verified-passwords.js";

describe("VerifiedPasswords", () => {
  const options = { ttlMs: 1000, maxEntries: 2 };

  it("answers only for the same user, hash and password, within the TTL", () => {
    const cache = new VerifiedPasswords(options);
    assert.equal(cache.matches("alice", "$2a$h1", "pw", 0), false, "nothing verified yet");
    cache.remember("alice", "$2a$h1", "pw", 0);
    assert.equal(cache.matches("alice", "$2a$h1", "pw", 999), true);
    assert.equal(cache.matches("alice", "$2a$h1", "other", 1), false, "a different password pays bcrypt");
    assert.equal(cache.matches("alice", "$2a$h2", "pw", 1), false, "a changed password hash is a miss");
    assert.equal(cache.matches("bob", "$2a$h1", "pw", 1), false);
    assert.equal(cache.matches("alice", "$2a$h1", "pw", 1000), false, "expired");
  });

  it("keeps at most maxEntries users and nothing when the TTL is 0", () => {
    const cache = new VerifiedPasswords(options);
    for (const user of ["a", "b", "c"]) cache.remember(user, "h", "pw", 0);
    assert.equal(cache.size, 2);
    assert.equal(cache.matches("a", "h", "pw", 1), false, "the oldest was dropped");
    assert.equal(cache.matches("c", "h", "pw", 1), true);
    const off = new VerifiedPasswords({ ttlMs: 0, maxEntries: 10 });
    off.remember("a", "h", "pw", 0);
    assert.equal(off.matches("a", "h", "pw", 0), false);
  });
});
