import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Entry, EntryType } from "../types.js";
import { EMPTY_DIGEST, KvStateMachine, proposalData } from "./kv-state-machine.js";

const put = (index: number, term: number, id: number, key: string, value: string): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: proposalData(id, key, value),
});

describe("KvStateMachine", () => {
  it("applies puts in order and chains a digest that depends on every entry", () => {
    const a = KvStateMachine.empty();
    const b = KvStateMachine.empty();
    a.apply(put(1, 1, 1, "k", "v1"));
    b.apply(put(1, 1, 1, "k", "v1"));
    assert.equal(a.digest, b.digest);
    assert.notEqual(a.digest, EMPTY_DIGEST);
    a.apply(put(2, 1, 2, "k", "v2"));
    b.apply(put(2, 2, 2, "k", "v2")); // same content, different term
    assert.notEqual(a.digest, b.digest);
    assert.equal(a.get("k"), "v2");
  });

  it("refuses to skip or repeat an index", () => {
    const a = KvStateMachine.empty();
    assert.throws(() => a.apply(put(2, 1, 1, "k", "v")), /asked to apply index 2/);
    a.apply(put(1, 1, 1, "k", "v"));
    assert.throws(() => a.apply(put(1, 1, 1, "k", "v")), /asked to apply index 1/);
  });

  it("restores from its snapshot image to the same state and digest", () => {
    const a = KvStateMachine.empty();
    a.apply(put(1, 1, 1, "x", "1"));
    a.apply({ index: 2, term: 1, type: EntryType.Normal, data: new Uint8Array(0) });
    a.apply(put(3, 2, 2, "y", "2"));
    const b = KvStateMachine.restore(3, a.snapshotData());
    assert.equal(b.digest, a.digest);
    assert.equal(b.appliedIndex, 3);
    assert.equal(b.get("x"), "1");
    assert.equal(b.get("y"), "2");
    assert.throws(() => KvStateMachine.restore(4, a.snapshotData()), /image is of index 3/);
  });
});
