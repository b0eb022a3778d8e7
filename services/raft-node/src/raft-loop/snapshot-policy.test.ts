import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compactionIndex, SNAPSHOT_CATCH_UP_ENTRIES, shouldSnapshot } from "./snapshot-policy.js";

describe("snapshot policy", () => {
  it("snapshots once more than snapshot-count entries were applied since the last one", () => {
    assert.equal(shouldSnapshot(100, 0, 100), false);
    assert.equal(shouldSnapshot(101, 0, 100), true);
    assert.equal(shouldSnapshot(201, 101, 100), false);
    assert.equal(shouldSnapshot(202, 101, 100), true);
    assert.equal(shouldSnapshot(10_000, 0, 0), false, "0 disables snapshots");
  });

  it("keeps etcd's catch-up tail of entries when compacting", () => {
    assert.equal(SNAPSHOT_CATCH_UP_ENTRIES, 5000);
    assert.equal(compactionIndex(20_000, 1), 15_000);
    assert.equal(compactionIndex(4_000, 1), undefined);
    assert.equal(compactionIndex(20_000, 16_000), undefined);
    assert.equal(compactionIndex(10, 2, 5), 5);
  });
});
