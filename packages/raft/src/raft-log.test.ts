import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CompactedError, RaftError } from "./errors.js";
import { RaftLog } from "./raft-log.js";
import { MemoryStorage } from "./storage.js";
import { type Entry, EntryType } from "./types.js";

const ent = (index: number, term: number, size = 0): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new Uint8Array(size),
});
const indexes = (es: Entry[]) => es.map((e) => e.index);

/** Stable 1..3 (terms 1,1,2) in storage, unstable 4..5 (terms 2,3). */
function mixedLog(maxApplying = Infinity): RaftLog {
  const s = new MemoryStorage();
  s.append([ent(1, 1, 10), ent(2, 1, 10), ent(3, 2, 10)]);
  const log = new RaftLog(s, maxApplying);
  log.append([ent(4, 2, 10), ent(5, 3, 10)]);
  return log;
}

describe("RaftLog", () => {
  test("indexes and terms span storage and the unstable tail", () => {
    const log = mixedLog();
    assert.equal(log.firstIndex(), 1);
    assert.equal(log.lastIndex(), 5);
    assert.equal(log.lastTerm(), 3);
    assert.equal(log.maybeTerm(0), 0);
    assert.equal(log.maybeTerm(3), 2);
    assert.equal(log.maybeTerm(4), 2);
    assert.equal(log.maybeTerm(6), undefined);
  });

  test("slice crosses from storage into unstable, honouring the size limit", () => {
    const log = mixedLog();
    assert.deepEqual(indexes(log.slice(2, 6, Infinity)), [2, 3, 4, 5]);
    assert.deepEqual(indexes(log.slice(2, 6, 30)), [2, 3, 4]);
    assert.deepEqual(indexes(log.slice(2, 6, 25)), [2, 3]);
    assert.deepEqual(indexes(log.slice(4, 6, 0)), [4], "at least one");
    assert.throws(() => log.slice(2, 7, Infinity), RaftError);
  });

  test("compacted entries are reported as such", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
    s.createSnapshot(2, undefined, new Uint8Array(0));
    s.compact(2);
    const log = new RaftLog(s, Infinity);
    assert.equal(log.committed, 2, "a restarted log is committed up to its snapshot");
    assert.equal(log.maybeTerm(1), undefined);
    assert.equal(log.maybeTerm(2), 1, "the snapshot's term stays known");
    assert.throws(() => log.slice(1, 3, Infinity), CompactedError);
  });

  test("findConflictByTerm finds the last index whose term is <= the given term", () => {
    // terms: 1:1 2:1 3:2 4:2 5:3
    const log = mixedLog();
    assert.deepEqual(log.findConflictByTerm(5, 3), { index: 5, term: 3 });
    assert.deepEqual(log.findConflictByTerm(5, 2), { index: 4, term: 2 });
    assert.deepEqual(log.findConflictByTerm(5, 1), { index: 2, term: 1 });
    assert.deepEqual(log.findConflictByTerm(5, 0), { index: 0, term: 0 });
  });

  test("findConflict and maybeAppend: matching, conflicting and new entries", () => {
    const log = mixedLog();
    assert.equal(log.findConflict([ent(4, 2), ent(5, 3)]), 0);
    assert.equal(log.findConflict([ent(5, 3), ent(6, 3)]), 6);
    assert.equal(log.findConflict([ent(4, 4)]), 4);
    assert.equal(log.maybeAppend(3, 9, 5, []), undefined, "prev term mismatch");
    assert.equal(log.maybeAppend(3, 2, 4, [ent(4, 4), ent(5, 4)]), 5);
    assert.equal(log.maybeTerm(5), 4);
    assert.equal(log.committed, 4);
  });

  test("truncating a committed entry is a safety violation", () => {
    const log = mixedLog();
    log.commitTo(4);
    assert.throws(() => log.maybeAppend(3, 2, 4, [ent(4, 9)]), /conflicts with committed/);
    assert.throws(() => log.commitTo(9), RaftError);
  });

  test("stableTo ignores acknowledgements for entries that were replaced since", () => {
    const log = mixedLog();
    log.unstable.acceptInProgress();
    // Entry 5 is overwritten at term 4 before the old one's write is acknowledged.
    log.append([ent(5, 4)]);
    log.stableTo(5, 3);
    assert.deepEqual(indexes(log.unstable.entries), [4, 5]);
    assert.deepEqual(indexes(log.unstable.nextEntries()), [5], "only the replacement is still to write");
    log.stableTo(5, 4);
    assert.deepEqual(log.unstable.entries, []);
    assert.equal(log.unstable.offset, 6);
  });

  test("committed entries are handed out once, bounded in size, from applying+1", () => {
    const log = mixedLog(15);
    log.commitTo(5);
    let next = log.nextCommittedEntries();
    assert.deepEqual(indexes(next), [1]);
    log.acceptApplying(1);
    next = log.nextCommittedEntries();
    assert.deepEqual(indexes(next), [2]);
    log.acceptApplying(5);
    assert.equal(log.hasNextCommittedEntries(), false);
    log.appliedTo(5);
    assert.equal(log.applied, 5);
    assert.throws(() => log.appliedTo(6), RaftError);
  });

  test("restore makes the snapshot the whole log and holds back committed entries until it is applied", () => {
    const log = mixedLog();
    log.restore({
      metadata: { index: 10, term: 5, confState: { voters: [1n], learners: [] } },
      data: new Uint8Array(0),
    });
    assert.equal(log.firstIndex(), 11);
    assert.equal(log.lastIndex(), 10);
    assert.equal(log.committed, 10);
    assert.equal(log.maybeTerm(10), 5);
    assert.equal(log.hasNextCommittedEntries(), false);
    assert.equal(log.snapshot().metadata.index, 10);
  });

  test("isUpToDate compares last term first, then last index", () => {
    const log = mixedLog();
    assert.equal(log.isUpToDate(5, 3), true);
    assert.equal(log.isUpToDate(4, 3), false);
    assert.equal(log.isUpToDate(1, 4), true);
    assert.equal(log.isUpToDate(100, 2), false);
  });
});
