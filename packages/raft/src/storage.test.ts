import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeConfChange } from "./codec.js";
import { CompactedError, RaftError, SnapshotOutOfDateError, UnavailableError } from "./errors.js";
import { BOOTSTRAP_TERM, bootstrapStorage, MemoryStorage } from "./storage.js";
import { ConfChangeType, type Entry, EntryType } from "./types.js";

const ent = (index: number, term: number, size = 0): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new Uint8Array(size),
});

/** A storage whose log was compacted at index 3 (term 3) and holds 4 and 5. */
function compactedAt3(): MemoryStorage {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4, 10), ent(5, 5, 10)]);
  s.createSnapshot(3, { voters: [1n], learners: [] }, new Uint8Array(0));
  s.compact(3);
  return s;
}

const indexes = (es: Entry[]) => es.map((e) => e.index);

describe("MemoryStorage", () => {
  test("starts empty with a dummy entry at index 0, term 0", () => {
    const s = new MemoryStorage();
    assert.equal(s.firstIndex(), 1);
    assert.equal(s.lastIndex(), 0);
    assert.equal(s.term(0), 0);
    assert.throws(() => s.term(1), UnavailableError);
    assert.deepEqual(s.initialState().confState, { voters: [], learners: [] });
  });

  test("term: compacted below the snapshot, known at it, unavailable past the end", () => {
    const s = compactedAt3();
    assert.throws(() => s.term(2), CompactedError);
    assert.equal(s.term(3), 3);
    assert.equal(s.term(5), 5);
    assert.throws(() => s.term(6), UnavailableError);
    assert.equal(s.firstIndex(), 4);
    assert.equal(s.lastIndex(), 5);
  });

  test("entries: bounds and size limit (at least one entry)", () => {
    const s = compactedAt3();
    assert.throws(() => s.entries(3, 5, Infinity), CompactedError);
    assert.throws(() => s.entries(4, 7, Infinity), UnavailableError);
    assert.deepEqual(indexes(s.entries(4, 6, Infinity)), [4, 5]);
    assert.deepEqual(indexes(s.entries(4, 6, 15)), [4]);
    assert.deepEqual(indexes(s.entries(4, 6, 0)), [4]);
    assert.deepEqual(indexes(s.entries(4, 6, 20)), [4, 5]);
  });

  test("compact: refuses to go backwards or past the end", () => {
    const s = compactedAt3();
    assert.throws(() => s.compact(3), CompactedError);
    assert.throws(() => s.compact(6), RaftError);
    s.compact(4);
    assert.equal(s.firstIndex(), 5);
    assert.equal(s.term(4), 4);
  });

  test("createSnapshot: records index, term and conf state; refuses older snapshots", () => {
    const s = compactedAt3();
    const snap = s.createSnapshot(5, { voters: [1n, 2n], learners: [] }, new Uint8Array([7]));
    assert.deepEqual(snap.metadata, { index: 5, term: 5, confState: { voters: [1n, 2n], learners: [] } });
    assert.equal(s.snapshot(), snap);
    assert.throws(() => s.createSnapshot(4, undefined, new Uint8Array(0)), SnapshotOutOfDateError);
    assert.deepEqual(s.initialState().confState, { voters: [1n, 2n], learners: [] });
  });

  test("append: extends, overwrites a conflicting suffix, ignores the compacted prefix", () => {
    const s = compactedAt3();
    s.append([ent(6, 5)]);
    assert.equal(s.lastIndex(), 6);
    s.append([ent(5, 6), ent(6, 6), ent(7, 6)]);
    assert.deepEqual(
      s.entries(4, 8, Infinity).map((e) => e.term),
      [4, 6, 6, 6],
    );
    // Entries from before the snapshot are dropped, the rest appended.
    s.append([ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 7)]);
    assert.equal(s.lastIndex(), 5);
    assert.equal(s.term(5), 7);
    // A gap is a bug in the caller.
    assert.throws(() => s.append([ent(9, 7)]), RaftError);
  });

  test("applySnapshot: replaces the log; an older snapshot is refused", () => {
    const s = compactedAt3();
    const snap = {
      metadata: { index: 10, term: 9, confState: { voters: [1n, 2n, 3n], learners: [] } },
      data: new Uint8Array(0),
    };
    s.applySnapshot(snap);
    assert.equal(s.firstIndex(), 11);
    assert.equal(s.lastIndex(), 10);
    assert.equal(s.term(10), 9);
    assert.throws(
      () => s.applySnapshot({ ...snap, metadata: { ...snap.metadata, index: 10 } }),
      SnapshotOutOfDateError,
    );
  });
});

describe("bootstrap", () => {
  test("a founding member's log: one committed AddNode per voter at term 1", () => {
    const s = bootstrapStorage([3n, 1n, 2n]);
    const { hardState, confState } = s.initialState();
    assert.deepEqual(hardState, { term: BOOTSTRAP_TERM, vote: 0n, commit: 3 });
    assert.deepEqual(confState, { voters: [3n, 1n, 2n], learners: [] });
    const ents = s.entries(1, 4, Infinity);
    assert.deepEqual(
      ents.map((e) => [e.index, e.term, e.type]),
      [
        [1, 1, EntryType.ConfChange],
        [2, 1, EntryType.ConfChange],
        [3, 1, EntryType.ConfChange],
      ],
    );
    assert.deepEqual(
      ents.map((e) => decodeConfChange(e.data)).map((c) => [c.type, c.nodeId]),
      [
        [ConfChangeType.AddNode, 3n],
        [ConfChangeType.AddNode, 1n],
        [ConfChangeType.AddNode, 2n],
      ],
    );
  });

  test("refuses an empty, duplicated or invalid voter list", () => {
    assert.throws(() => bootstrapStorage([]), RaftError);
    assert.throws(() => bootstrapStorage([1n, 1n]), RaftError);
    assert.throws(() => bootstrapStorage([0n]), RaftError);
  });
});
