import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  compactionIndex,
  type FollowerProgress,
  SNAPSHOT_CATCH_UP_ENTRIES,
  SnapshotFollowUps,
  shouldSnapshot,
  snapshotNear,
} from "./snapshot-policy.js";

describe("snapshot policy", () => {
  it("snapshots once more than snapshot-count entries were applied since the last one", () => {
    assert.equal(shouldSnapshot(100, 0, 100), false);
    assert.equal(shouldSnapshot(101, 0, 100), true);
    assert.equal(shouldSnapshot(201, 101, 100), false);
    assert.equal(shouldSnapshot(202, 101, 100), true);
    assert.equal(shouldSnapshot(10_000, 0, 0), false, "0 disables snapshots");
  });

  it("gets a snapshot's sync ready 1,000 entries ahead, or a hundredth of the count if more", () => {
    assert.equal(snapshotNear(99_000, 0, 100_000), false);
    assert.equal(snapshotNear(99_001, 0, 100_000), true);
    assert.equal(snapshotNear(109_001, 10_000, 100_000), true);
    assert.equal(snapshotNear(990_000, 0, 1_000_000), false);
    assert.equal(snapshotNear(990_001, 0, 1_000_000), true, "10,000 ahead at a count of 1,000,000");
    assert.equal(snapshotNear(1, 0, 300), true, "a count under the lead: ready from the last snapshot on");
    assert.equal(snapshotNear(10_000, 0, 0), false, "0 disables snapshots");
  });

  it("keeps etcd's catch-up tail of entries when compacting", () => {
    assert.equal(SNAPSHOT_CATCH_UP_ENTRIES, 5000);
    assert.equal(compactionIndex(20_000, 1), 15_000);
    assert.equal(compactionIndex(4_000, 1), undefined);
    assert.equal(compactionIndex(20_000, 16_000), undefined);
    assert.equal(compactionIndex(10, 2, 5), 5);
  });

  it("never compacts past what a follower still needs", () => {
    assert.equal(compactionIndex(20_000, 1, 5000, 12_000), 12_000);
    assert.equal(compactionIndex(20_000, 1, 5000, 18_000), 15_000, "the catch-up tail is the lower bound");
    assert.equal(compactionIndex(20_000, 13_000, 5000, 12_000), undefined);
  });

  it("holds the log after a snapshot until the follower acknowledges past it, or for a bounded time", () => {
    const followUps = new SnapshotFollowUps(30_000);
    const progress = (match: number, state: FollowerProgress["state"] = "probe", pendingSnapshot = 0) =>
      new Map<bigint, FollowerProgress>([
        [1n, { match: 900, state: "replicate", pendingSnapshot: 0 }],
        [2n, { match, state, pendingSnapshot }],
      ]);
    assert.equal(followUps.keepAfter(progress(100), 0), undefined, "nobody was sent a snapshot");
    // While the snapshot is on its way (etcd's inflightSnapshots rule).
    assert.equal(followUps.keepAfter(progress(100, "snapshot", 800), 0), 800);
    followUps.sent(2n, 800, 1_000);
    // Installing: the follower has not answered yet, or has answered with the snapshot's index.
    assert.equal(followUps.keepAfter(progress(100), 5_000), 800);
    assert.equal(followUps.keepAfter(progress(800), 6_000), 800);
    // It acknowledged an entry past the snapshot: caught up from the log, the hold is gone.
    assert.equal(followUps.keepAfter(progress(801, "replicate"), 7_000), undefined);
    assert.equal(followUps.keepAfter(progress(100), 8_000), undefined, "gone for good");

    followUps.sent(2n, 900, 10_000);
    assert.equal(followUps.keepAfter(progress(100), 39_999), 900);
    assert.equal(
      followUps.keepAfter(progress(100), 40_000),
      undefined,
      "a follower that slow gets a new snapshot",
    );
    followUps.sent(2n, 950, 50_000);
    assert.equal(followUps.keepAfter(new Map(), 50_001), undefined, "no longer leader: no progress, no hold");
  });
});
