import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { Lessor, type LessorOptions, MAX_LEASE_TTL, minLeaseTtlSeconds } from "./lessor.js";

function fakeClock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function lessor(options: Partial<LessorOptions> = {}) {
  const clock = fakeClock();
  const lessor = new Lessor({ clock: clock.now, minTtlSeconds: 2, ...options });
  return { clock, lessor };
}

const key = (name: string) => Buffer.from(name);
const names = (keys: Buffer[]) => keys.map((k) => k.toString());

describe("minLeaseTtlSeconds", () => {
  it("follows etcd: ceil(floor(3 * electionTicks / 2) * heartbeat)", () => {
    assert.equal(minLeaseTtlSeconds(100, 1000), 2);
    assert.equal(minLeaseTtlSeconds(50, 500), 1);
    assert.equal(minLeaseTtlSeconds(500, 5000), 8);
  });
});

describe("Lessor: grant", () => {
  it("raises short TTLs to the minimum and refuses too large, duplicate and zero IDs", () => {
    const { lessor: l } = lessor({ minTtlSeconds: 5 });
    assert.equal(l.grant(1n, 1).ttl, 5);
    assert.equal(l.grant(2n, 60).ttl, 60);
    assert.equal(l.grant(3n, MAX_LEASE_TTL).ttl, MAX_LEASE_TTL);
    assert.throws(
      () => l.grant(4n, MAX_LEASE_TTL + 1),
      (e) => isEtcdError(e, "LeaseTTLTooLarge"),
    );
    assert.throws(
      () => l.grant(2n, 10),
      (e) => isEtcdError(e, "LeaseExist"),
    );
    assert.throws(
      () => l.grant(0n, 10),
      (e) => isEtcdError(e, "LeaseNotFound"),
    );
    assert.equal(l.size, 3);
  });
});

describe("Lessor: expiry", () => {
  it("only the primary reports expired leases", () => {
    const { clock, lessor: l } = lessor();
    l.grant(7n, 10);
    clock.advance(60_000);
    assert.deepEqual(l.expiredLeases(), []);
    assert.throws(
      () => l.renew(7n),
      (e) => isEtcdError(e, "NotLeader"),
    );
    l.promote(0);
    assert.deepEqual(l.expiredLeases(), []);
    clock.advance(10_000);
    assert.deepEqual(l.expiredLeases(), [7n]);
  });

  it("reports a lease at its expiry, retries after the retry interval, and forgets it once revoked", () => {
    const { clock, lessor: l } = lessor({ expiredRetryIntervalMs: 3000 });
    l.promote(0);
    l.grant(1n, 10);
    clock.advance(9_999);
    assert.deepEqual(l.expiredLeases(), []);
    clock.advance(1);
    assert.deepEqual(l.expiredLeases(), [1n]);
    assert.deepEqual(l.expiredLeases(), [], "not proposed twice while its revoke is in flight");
    clock.advance(3000);
    assert.deepEqual(l.expiredLeases(), [1n], "re-proposed when the revoke did not commit");
    l.revoke(1n);
    clock.advance(10_000);
    assert.deepEqual(l.expiredLeases(), []);
  });

  it("returns at most half the revoke rate per poll", () => {
    const { clock, lessor: l } = lessor({ revokeRatePerSecond: 100 });
    l.promote(0);
    for (let id = 1n; id <= 130n; id++) l.grant(id, 5);
    clock.advance(5000);
    const first = l.expiredLeases();
    const second = l.expiredLeases();
    const third = l.expiredLeases();
    assert.deepEqual([first.length, second.length, third.length], [50, 50, 30]);
    assert.equal(new Set([...first, ...second, ...third]).size, 130);
  });

  it("keep-alive restarts the full TTL and answers it", () => {
    const { clock, lessor: l } = lessor();
    l.promote(0);
    l.grant(1n, 10);
    clock.advance(8000);
    assert.equal(l.renew(1n).ttl, 10);
    clock.advance(9000);
    assert.deepEqual(l.expiredLeases(), []);
    assert.equal(l.timeToLive(1n, false).ttl, 1);
    clock.advance(1000);
    assert.deepEqual(l.expiredLeases(), [1n]);
    assert.throws(
      () => l.renew(1n),
      (e) => isEtcdError(e, "LeaseNotFound"),
      "expired: its revoke is coming",
    );
    assert.throws(
      () => l.renew(99n),
      (e) => isEtcdError(e, "LeaseNotFound"),
    );
  });

  it("demotion stops expiry tracking", () => {
    const { clock, lessor: l } = lessor();
    l.promote(0);
    l.grant(1n, 10);
    l.demote();
    clock.advance(60_000);
    assert.deepEqual(l.expiredLeases(), []);
    assert.deepEqual(l.dueCheckpoints(), []);
  });
});

describe("Lessor: lease list", () => {
  it("lists every lease, soonest expiry first on the primary, by ID elsewhere", () => {
    const { lessor: l } = lessor();
    l.grant(3n, 50);
    l.grant(1n, 90);
    l.grant(2n, 10);
    assert.deepEqual(l.leases(), [1n, 2n, 3n]);
    l.promote(0);
    assert.deepEqual(l.leases(), [2n, 3n, 1n]);
  });
});

describe("Lessor: key attachment", () => {
  it("follows puts, lease moves, ignore_lease puts and deletes; revoke returns its keys sorted", () => {
    const { lessor: l } = lessor();
    l.grant(1n, 60);
    l.grant(2n, 60);
    l.keyWritten(key("b"), 1n);
    l.keyWritten(key("a"), 1n);
    l.keyWritten(key("c"), 1n);
    l.keyWritten(key("c"), 2n); // moved to another lease
    l.keyWritten(key("a"), 1n); // ignore_lease: the key keeps its lease
    l.keyWritten(key("d"), 1n);
    l.keyWritten(key("d"), 0n); // a put without lease detaches
    l.keyWritten(key("e"), 1n);
    l.keyDeleted(key("e"));
    assert.equal(l.leaseOf(key("c")), 2n);
    assert.equal(l.leaseOf(key("d")), 0n);
    assert.deepEqual(names(l.revoke(1n)), ["a", "b"]);
    assert.equal(l.leaseOf(key("a")), 0n);
    assert.deepEqual(names(l.revoke(2n)), ["c"]);
    assert.throws(
      () => l.revoke(2n),
      (e) => isEtcdError(e, "LeaseNotFound"),
    );
  });

  it("refuses to attach a key to a lease it does not know", () => {
    const { lessor: l } = lessor();
    assert.throws(
      () => l.keyWritten(key("a"), 5n),
      (e) => isEtcdError(e, "LeaseNotFound"),
    );
  });

  it("time-to-live lists the attached keys and truncates the remaining seconds", () => {
    const { clock, lessor: l } = lessor();
    l.promote(0);
    l.grant(1n, 30);
    l.keyWritten(key("z"), 1n);
    l.keyWritten(key("y"), 1n);
    clock.advance(10_500);
    assert.deepEqual(l.timeToLive(1n, true), { id: 1n, ttl: 19, grantedTtl: 30, keys: [key("y"), key("z")] });
    assert.deepEqual(l.timeToLive(1n, false).keys, []);
    assert.throws(
      () => l.timeToLive(9n, false),
      (e) => isEtcdError(e, "LeaseNotFound"),
    );
  });
});

describe("Lessor: leadership and checkpoints", () => {
  it("promotion restarts leases from their checkpointed remaining TTL plus the extension", () => {
    const { clock, lessor: l } = lessor();
    l.grant(1n, 100);
    l.grant(2n, 100);
    l.checkpoint(1n, 30);
    l.promote(1000);
    clock.advance(30_999);
    assert.deepEqual(l.expiredLeases(), []);
    clock.advance(1);
    assert.deepEqual(l.expiredLeases(), [1n]);
    l.revoke(1n);
    clock.advance(69_999);
    assert.deepEqual(l.expiredLeases(), []);
    clock.advance(1);
    assert.deepEqual(l.expiredLeases(), [2n]);
  });

  it("the leader proposes checkpoints of remaining TTL each interval; a new leader resumes from them", () => {
    const leaderClock = fakeClock();
    const followerClock = fakeClock(5_000_000); // members' monotonic clocks share no origin
    const options = { minTtlSeconds: 2, checkpointIntervalMs: 60_000 };
    const leader = new Lessor({ clock: leaderClock.now, ...options });
    const follower = new Lessor({ clock: followerClock.now, ...options });
    leader.promote(0);
    // Both apply the same entries.
    for (const member of [leader, follower]) member.grant(1n, 600);
    for (const member of [leader, follower]) member.grant(2n, 30); // too short to checkpoint
    leaderClock.advance(59_000);
    assert.deepEqual(leader.dueCheckpoints(), []);
    leaderClock.advance(1000);
    const checkpoints = leader.dueCheckpoints();
    assert.deepEqual(checkpoints, [{ id: 1n, remainingTtl: 540 }]);
    for (const member of [leader, follower])
      for (const c of checkpoints) member.checkpoint(c.id, c.remainingTtl);
    assert.equal(follower.lookup(1n)?.remainingTtl, 540);

    // Leadership moves: the follower restarts lease 1 from 540 s (not 600), plus extension.
    leader.demote();
    follower.promote(1000);
    assert.equal(follower.timeToLive(1n, false).ttl, 541);
    followerClock.advance(540_999);
    assert.deepEqual(follower.expiredLeases(), [2n]);
    followerClock.advance(1);
    assert.deepEqual(follower.expiredLeases(), [1n]);
  });

  it("checkpoints every lease, whatever its TTL, each interval, less the next leader's extension", () => {
    const leaderClock = fakeClock();
    const followerClock = fakeClock(7_000_000);
    const options = { minTtlSeconds: 2, checkpointIntervalMs: 2000 };
    const leader = new Lessor({ clock: leaderClock.now, ...options });
    const follower = new Lessor({ clock: followerClock.now, ...options });
    leader.promote(1000);
    for (const member of [leader, follower]) member.grant(1n, 10);
    leaderClock.advance(2000);
    const checkpoints = leader.dueCheckpoints();
    // 8 s left; the next leader adds 1 s, so 7 s are recorded.
    assert.deepEqual(checkpoints, [{ id: 1n, remainingTtl: 7 }]);
    for (const member of [leader, follower]) member.checkpoint(1n, 7);
    leaderClock.advance(1999);
    assert.deepEqual(leader.dueCheckpoints(), [], "not before its interval");
    leaderClock.advance(1);
    assert.deepEqual(leader.dueCheckpoints(), [{ id: 1n, remainingTtl: 5 }]);
    leader.demote();
    follower.promote(1000);
    assert.equal(follower.lookup(1n)!.expiry - followerClock.now(), 8000, "7 s + 1 s: no growth");
  });

  it("a handover records every lease at once; the next leader restarts each less than 1 s above", () => {
    const leaderClock = fakeClock();
    const followerClock = fakeClock(7_000_000);
    const options = { minTtlSeconds: 2, checkpointIntervalMs: 300_000 };
    const leader = new Lessor({ clock: leaderClock.now, ...options });
    const follower = new Lessor({ clock: followerClock.now, ...options });
    leader.promote(1000);
    for (const member of [leader, follower]) {
      member.grant(1n, 60);
      member.grant(2n, 10);
      member.grant(3n, 600);
    }
    leaderClock.advance(20_300);
    leader.renew(3n);
    const left = (id: bigint, l: Lessor, now: number) => l.lookup(id)!.expiry - now;
    const before = left(1n, leader, leaderClock.now());
    const handover = leader.handoverCheckpoints();
    // Lease 2 has expired; lease 3 was just renewed (600 s left, less the 1 s extension).
    assert.deepEqual(handover, [
      { id: 1n, remainingTtl: 39 },
      { id: 3n, remainingTtl: 599 },
    ]);
    for (const member of [leader, follower])
      for (const c of handover) member.checkpoint(c.id, c.remainingTtl);
    leader.demote();
    follower.promote(1000);
    const after = left(1n, follower, followerClock.now());
    assert.ok(after >= before && after - before < 1000, `${before} -> ${after}`);
    assert.equal(left(3n, follower, followerClock.now()), 600_000, "renewed just now: its full TTL");
  });

  it("a checkpoint committed after promotion corrects a restart from an older record, unless renewed since", () => {
    const { clock, lessor: l } = lessor({ checkpointIntervalMs: 300_000 });
    for (const id of [1n, 2n, 3n]) l.grant(id, 60);
    l.checkpoint(3n, 20);
    l.promote(1000);
    const left = (id: bigint) => l.lookup(id)!.expiry - clock.now();
    assert.equal(left(1n), 61_000);
    l.renew(2n);
    // The old leader's last checkpoints commit in the new term.
    l.checkpoint(1n, 39);
    l.checkpoint(2n, 39);
    l.checkpoint(3n, 0); // the old leader renewed lease 3 after recording 20 s
    assert.equal(left(1n), 40_000, "restarted from the newer record");
    assert.equal(left(2n), 60_000, "renewed here: its own expiry stands");
    assert.equal(left(3n), 61_000, "a cleared record restarts the full TTL");
    // Lease 2's record (39 s) would make a next leader expire it early: corrected at once.
    assert.deepEqual(l.dueCheckpoints(), [{ id: 2n, remainingTtl: 59 }]);
  });

  it("renewing a checkpointed lease proposes a clearing checkpoint once", () => {
    const { clock, lessor: l } = lessor({ checkpointIntervalMs: 60_000 });
    l.promote(0);
    l.grant(1n, 600);
    clock.advance(60_000);
    const [checkpoint] = l.dueCheckpoints();
    l.checkpoint(checkpoint.id, checkpoint.remainingTtl);
    assert.deepEqual(l.renew(1n), { ttl: 600, clear: { id: 1n, remainingTtl: 0 } });
    l.checkpoint(1n, 0);
    assert.deepEqual(l.renew(1n), { ttl: 600, clear: undefined }, "no entry per keep-alive once cleared");
    assert.deepEqual(l.dueCheckpoints(), []);
    // The countdown itself restarted from the full TTL, not the stale remainder.
    assert.equal(l.timeToLive(1n, false).ttl, 600);
  });

  it("a lease renewed since its checkpoint was scheduled is looked at again an interval later", () => {
    const { clock, lessor: l } = lessor({ checkpointIntervalMs: 60_000 });
    l.promote(0);
    l.grant(1n, 600);
    clock.advance(60_000);
    l.renew(1n);
    assert.deepEqual(l.dueCheckpoints(), []);
    clock.advance(60_000);
    assert.deepEqual(l.dueCheckpoints(), [{ id: 1n, remainingTtl: 540 }]);
  });

  it("spreads expiries on promotion when more leases than the revoke rate would expire together", () => {
    const { clock, lessor: l } = lessor({ revokeRatePerSecond: 100 });
    for (let id = 1n; id <= 400n; id++) l.grant(id, 10);
    l.promote(0);
    const start = clock.now();
    const perSecond = new Map<number, number>();
    for (const id of l.leases()) {
      const second = Math.floor((l.lookup(id)!.expiry - start) / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
    }
    assert.ok(Math.max(...perSecond.values()) <= 75 + 1, JSON.stringify([...perSecond]));
    assert.ok(Math.min(...perSecond.keys()) >= 10, "no lease expires earlier than its TTL");
  });

  it("restore rebuilds leases with their checkpoints and attachments from stored keys", () => {
    const { lessor: l, clock } = lessor({ minTtlSeconds: 5 });
    l.restore(
      [
        { id: 1n, ttl: 60, remainingTtl: 12 },
        { id: 2n, ttl: 1, remainingTtl: 0 },
      ],
      [
        { key: key("a"), lease: 1n },
        { key: key("b"), lease: 0n },
        { key: key("orphan"), lease: 77n },
      ],
    );
    assert.equal(l.lookup(2n)?.ttl, 5, "the minimum TTL applies to restored leases too");
    assert.equal(l.leaseOf(key("a")), 1n);
    assert.equal(l.leaseOf(key("orphan")), 0n);
    l.promote(0);
    clock.advance(12_000);
    assert.deepEqual(l.expiredLeases(), [2n, 1n]);
  });
});
