import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfStateHistory } from "./conf-state-history.js";

const cs = (...voters: bigint[]) => ({ voters, learners: [] });

describe("configuration history", () => {
  it("gives the configuration in force at an index, not the newest", () => {
    const history = new ConfStateHistory(10, cs(1n));
    history.record(15, cs(1n, 2n));
    history.record(20, cs(1n, 2n, 3n));
    assert.deepEqual(history.at(10), cs(1n));
    assert.deepEqual(history.at(14), cs(1n));
    assert.deepEqual(history.at(15), cs(1n, 2n));
    assert.deepEqual(history.at(19), cs(1n, 2n));
    assert.deepEqual(history.at(1_000), cs(1n, 2n, 3n));
    assert.equal(history.at(9), undefined, "before the first known configuration");
  });

  it("keeps a bounded number and forgets the oldest", () => {
    const history = new ConfStateHistory(0, cs(1n), 3);
    for (let i = 1; i <= 5; i++) history.record(i * 10, cs(BigInt(i)));
    assert.equal(history.at(25), undefined, "index 20's configuration was forgotten");
    assert.deepEqual(history.at(30), cs(3n));
    assert.deepEqual(history.at(55), cs(5n));
  });

  it("starts over at an installed snapshot and refuses to go back", () => {
    const history = new ConfStateHistory(0, cs(1n));
    history.record(5, cs(1n, 2n));
    history.reset(100, cs(7n));
    assert.equal(history.at(50), undefined);
    assert.deepEqual(history.at(100), cs(7n));
    assert.throws(() => history.record(99, cs(8n)), /recorded after one at 100/);
  });
});
