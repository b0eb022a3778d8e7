import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LearnerAutoPromotion } from "./learner-auto-promotion.js";

describe("LearnerAutoPromotion", () => {
  const options = { maxLagEntries: 100, holdMs: 1000 };

  it("promotes a learner only after it stayed within the lag for the whole hold", () => {
    const p = new LearnerAutoPromotion(options);
    assert.deepEqual(p.due(0, 5000, new Map([[7n, 4000]])), [], "1000 entries behind");
    assert.deepEqual(p.due(100, 5000, new Map([[7n, 4950]])), [], "caught up: the streak starts");
    assert.deepEqual(p.due(600, 5100, new Map([[7n, 4900]])), [], "fell behind: the streak ends");
    assert.deepEqual(p.due(700, 5100, new Map([[7n, 5100]])), []);
    assert.deepEqual(p.due(1699, 5200, new Map([[7n, 5150]])), []);
    assert.deepEqual(p.due(1700, 5200, new Map([[7n, 5150]])), [7n]);
    assert.deepEqual(p.due(1800, 5200, new Map([[7n, 5200]])), [], "tried again only a hold later");
    assert.deepEqual(p.due(2800, 5200, new Map([[7n, 5200]])), [7n]);
  });

  it("applies etcd's 90% check too (a young log), and forgets learners that left or a lost leadership", () => {
    const p = new LearnerAutoPromotion(options);
    assert.deepEqual(p.due(0, 150, new Map([[1n, 100]])), [], "within 100 entries but under 90%");
    assert.deepEqual(p.due(5000, 150, new Map([[1n, 100]])), []);
    p.due(0, 1000, new Map([[2n, 1000]]));
    p.reset();
    assert.deepEqual(p.due(999, 1000, new Map([[2n, 1000]])), [], "the streak restarted after reset");
    assert.deepEqual(p.due(1999, 1000, new Map([[2n, 1000]])), [2n]);
  });
});
