import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyRing } from "./key-ring.js";

const timings = {
  tokenTtlMs: 300_000,
  rotationIntervalMs: 3_600_000,
  clockSkewMs: 5_000,
  publishLeadMs: 10_000,
};

function key(kid: string, ring: KeyRing<string>, now: number) {
  return {
    kid,
    privateKey: `private-${kid}`,
    publicJwk: { kid },
    createdAtMs: now,
    notAfterMs: ring.notAfterFor(now),
  };
}

describe("KeyRing", () => {
  it("signs with nothing until the first key is published", () => {
    const ring = new KeyRing<string>(timings);
    assert.equal(ring.needsRotation(0), true);
    ring.addPending(key("a", ring, 0));
    assert.equal(ring.signingKey(), undefined, "a pending key signs nothing");
    assert.equal(ring.needsRotation(0), false, "one publication at a time");
    ring.published("a", 10);
    assert.equal(ring.signingKey()?.kid, "a", "the first key signs at once: nothing to overlap with");
  });

  it("rotates after the interval: the new key signs only once published, the old one retires for one TTL", () => {
    const ring = new KeyRing<string>(timings);
    ring.addPending(key("a", ring, 0));
    ring.published("a", 0);
    assert.equal(ring.needsRotation(timings.rotationIntervalMs - 1), false);
    const t = timings.rotationIntervalMs;
    assert.equal(ring.needsRotation(t), true);
    ring.addPending(key("b", ring, t));
    assert.equal(ring.signingKey()?.kid, "a", "a keeps signing while b is being published");
    ring.published("b", t + 100);
    assert.equal(ring.signingKey()?.kid, "a", "b is announced for the lead time before it signs");
    assert.deepEqual(
      ring.publishedKeys().map((k) => k.kid),
      ["a", "b"],
    );
    assert.equal(ring.promote(t + 100 + timings.publishLeadMs - 1), false);
    assert.equal(ring.needsRotation(t + 100 + timings.publishLeadMs - 1), false);
    const switchAt = t + 100 + timings.publishLeadMs;
    assert.equal(ring.promote(switchAt), true);
    assert.equal(ring.signingKey()?.kid, "b");
    assert.equal(ring.get("a")?.state, "retiring");
    // a's last token was signed just before the switch and lives one TTL: a stays until then.
    const withdrawAt = switchAt + timings.tokenTtlMs + timings.clockSkewMs;
    assert.deepEqual(ring.withdrawable(withdrawAt - 1), []);
    assert.deepEqual(ring.withdrawable(withdrawAt), ["a"]);
    ring.withdrawn("a");
    assert.deepEqual(
      ring.publishedKeys().map((k) => k.kid),
      ["b"],
    );
  });

  it("a failed publication leaves the current key signing and lets the next attempt start", () => {
    const ring = new KeyRing<string>(timings);
    ring.addPending(key("a", ring, 0));
    ring.published("a", 0);
    ring.addPending(key("b", ring, timings.rotationIntervalMs));
    ring.abandon("b");
    assert.equal(ring.signingKey()?.kid, "a");
    assert.equal(ring.needsRotation(timings.rotationIntervalMs), true);
  });

  it("no token outlives its key, even when rotation could not happen in time", () => {
    const ring = new KeyRing<string>(timings);
    ring.addPending(key("a", ring, 0));
    ring.published("a", 0);
    const a = ring.signingKey()!;
    assert.equal(ring.tokenExpiryMs(a, 1000), 1000 + timings.tokenTtlMs);
    const late = a.notAfterMs - 1000;
    assert.ok(ring.tokenExpiryMs(a, late) <= a.notAfterMs - timings.clockSkewMs);
  });

  it("refuses duplicate key IDs and bad timings", () => {
    const ring = new KeyRing<string>(timings);
    ring.addPending(key("a", ring, 0));
    assert.throws(() => ring.addPending(key("a", ring, 0)));
    assert.throws(() => new KeyRing({ ...timings, tokenTtlMs: 0 }), RangeError);
  });
});
