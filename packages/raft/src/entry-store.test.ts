import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { EntryStore, SEGMENT_BYTES, SEGMENT_SLOTS } from "./entry-store.js";
import { RaftError } from "./errors.js";
import { Prng } from "./sim/prng.js";
import { type Entry, EntryType } from "./types.js";

/** An entry whose bytes name its index and term, so a wrong offset or segment shows. */
function ent(index: number, term: number, size = 8, type = EntryType.Normal): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index * 31 + term * 7 + i) & 0xff;
  return { term, index, type, data };
}

function run(from: number, to: number, term: number, size = 8): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, size));
  return out;
}

/** Compares plainly: the store's data are Buffers, the model's Uint8Arrays. */
const plain = (es: Entry[]) =>
  es.map((e) => ({ term: e.term, index: e.index, type: e.type, data: [...e.data] }));

describe("EntryStore", () => {
  test("an empty store: base 0, term 0, nothing after", () => {
    const s = new EntryStore();
    assert.equal(s.baseIndex(), 0);
    assert.equal(s.lastIndex(), 0);
    assert.equal(s.term(0), 0);
    assert.deepEqual(s.entries(1, 1, Infinity), []);
  });

  test("entries come back with their terms, types and bytes, across segment boundaries", () => {
    const s = new EntryStore();
    const n = SEGMENT_SLOTS * 2 + 10;
    const ents = run(1, n, 3);
    ents[SEGMENT_SLOTS - 1].type = EntryType.ConfChange;
    ents[SEGMENT_SLOTS + 1].type = EntryType.ConfChange;
    // In batches of assorted lengths, as Readies hand them over.
    for (let i = 0; i < n; ) {
      const len = 1 + ((i * 7) % 300);
      s.append(ents.slice(i, i + len));
      i += len;
    }
    assert.equal(s.lastIndex(), n);
    assert.deepEqual(plain(s.entries(1, n + 1, Infinity)), plain(ents));
    // Slices that start, end or straddle at a segment's edge.
    for (const [lo, hi] of [
      [SEGMENT_SLOTS, SEGMENT_SLOTS + 1],
      [SEGMENT_SLOTS + 1, SEGMENT_SLOTS + 2],
      [SEGMENT_SLOTS - 2, SEGMENT_SLOTS + 3],
      [2 * SEGMENT_SLOTS, 2 * SEGMENT_SLOTS + 2],
    ]) {
      assert.deepEqual(
        plain(s.entries(lo, hi, Infinity)),
        plain(ents.slice(lo - 1, hi - 1)),
        `[${lo}, ${hi})`,
      );
    }
    for (const i of [1, SEGMENT_SLOTS, SEGMENT_SLOTS + 1, n]) assert.equal(s.term(i), 3);
  });

  test("maxSize: the longest prefix that fits, never none", () => {
    const s = new EntryStore();
    s.append([ent(1, 1, 10), ent(2, 1, 10), ent(3, 1, 0), ent(4, 1, 10)]);
    const idx = (lo: number, hi: number, max: number) => s.entries(lo, hi, max).map((e) => e.index);
    assert.deepEqual(idx(1, 5, 0), [1]);
    assert.deepEqual(idx(1, 5, 19), [1]);
    assert.deepEqual(idx(1, 5, 20), [1, 2, 3]);
    assert.deepEqual(idx(1, 5, 29), [1, 2, 3]);
    assert.deepEqual(idx(1, 5, 30), [1, 2, 3, 4]);
    assert.deepEqual(idx(3, 5, 5), [3]);
    assert.deepEqual(idx(3, 5, 10), [3, 4]);
  });

  test("an entry larger than a segment gets one of its own; its neighbours stay intact", () => {
    const s = new EntryStore();
    const big = ent(3, 1, SEGMENT_BYTES + 100);
    const ents = [ent(1, 1), ent(2, 1), big, ent(4, 2), ent(5, 2, SEGMENT_BYTES - 10), ent(6, 2)];
    s.append(ents.slice(0, 2));
    s.append(ents.slice(2));
    assert.deepEqual(plain(s.entries(1, 7, Infinity)), plain(ents));
    const idx = (max: number) => s.entries(2, 7, max).map((e) => e.index);
    assert.deepEqual(idx(SEGMENT_BYTES + 107), [2]);
    assert.deepEqual(idx(SEGMENT_BYTES + 108), [2, 3]);
  });

  test("compaction in the middle of a segment keeps the compaction point's term", () => {
    const s = new EntryStore();
    s.append(run(1, 10, 1));
    s.append(run(11, 20, 2));
    s.compact(15);
    assert.equal(s.baseIndex(), 15);
    assert.equal(s.term(15), 2);
    assert.equal(s.term(16), 2);
    assert.equal(s.lastIndex(), 20);
    assert.deepEqual(plain(s.entries(16, 21, Infinity)), plain(run(16, 20, 2)));
    // Appending after it and compacting again, past a segment's end, then to the last entry.
    s.append(run(21, 21 + SEGMENT_SLOTS, 3));
    s.compact(SEGMENT_SLOTS + 5);
    assert.equal(s.term(SEGMENT_SLOTS + 5), 3);
    assert.deepEqual(
      plain(s.entries(SEGMENT_SLOTS + 6, SEGMENT_SLOTS + 8, Infinity)),
      plain(run(SEGMENT_SLOTS + 6, SEGMENT_SLOTS + 7, 3)),
    );
    s.compact(21 + SEGMENT_SLOTS);
    assert.equal(s.lastIndex(), 21 + SEGMENT_SLOTS);
    assert.equal(s.term(21 + SEGMENT_SLOTS), 3);
    s.append([ent(22 + SEGMENT_SLOTS, 4)]);
    assert.deepEqual(
      plain(s.entries(22 + SEGMENT_SLOTS, 23 + SEGMENT_SLOTS, Infinity)),
      plain([ent(22 + SEGMENT_SLOTS, 4)]),
    );
  });

  test("a conflicting suffix is replaced, and views handed out before keep their bytes", () => {
    const s = new EntryStore();
    s.append(run(1, 10, 1));
    const before = s.entries(6, 11, Infinity);
    const copy = plain(before);
    s.append(run(6, 8, 2, 20));
    assert.equal(s.lastIndex(), 8);
    assert.deepEqual(plain(before), copy);
    assert.deepEqual(plain(s.entries(1, 9, Infinity)), plain([...run(1, 5, 1), ...run(6, 8, 2, 20)]));
    // Replacing from right after the compaction point.
    s.compact(5);
    s.append(run(6, 7, 3));
    assert.equal(s.term(5), 1);
    assert.deepEqual(plain(s.entries(6, 8, Infinity)), plain(run(6, 7, 3)));
  });

  test("appended entries are copied: the caller's buffers can change afterwards", () => {
    const s = new EntryStore();
    const frame = new Uint8Array(64).fill(9);
    s.append([{ term: 1, index: 1, type: EntryType.Normal, data: frame.subarray(8, 16) }]);
    frame.fill(0);
    assert.deepEqual([...s.entries(1, 2, Infinity)[0].data], new Array(8).fill(9));
  });

  test("refuses a gap or an append at or below the compaction point", () => {
    const s = new EntryStore();
    s.append(run(1, 3, 1));
    assert.throws(() => s.append([ent(5, 1)]), RaftError);
    s.compact(2);
    assert.throws(() => s.append([ent(2, 1)]), RaftError);
  });

  test("reset forgets everything: the log restarts after the snapshot's index", () => {
    const s = new EntryStore();
    s.append(run(1, 10, 1));
    s.reset(100, 7);
    assert.equal(s.baseIndex(), 100);
    assert.equal(s.lastIndex(), 100);
    assert.equal(s.term(100), 7);
    s.append(run(101, 102, 8));
    assert.deepEqual(plain(s.entries(101, 103, Infinity)), plain(run(101, 102, 8)));
  });

  test("matches a plain array under random appends, overwrites and compactions", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rng = new Prng(seed);
      const s = new EntryStore();
      let model: Entry[] = []; // model[i] has index base + 1 + i
      let base = 0;
      let baseTerm = 0;
      let term = 1;
      for (let step = 0; step < 300; step++) {
        const last = base + model.length;
        const op = rng.int(10);
        if (op < 7) {
          // Append, sometimes over a suffix (a new leader's entries).
          const from = op === 0 && model.length > 0 ? base + 1 + rng.int(model.length) : last + 1;
          if (op === 0) term++;
          const n = 1 + rng.int(op === 1 ? 600 : 40);
          const big = rng.int(50) === 0;
          const ents: Entry[] = [];
          for (let i = 0; i < n; i++) ents.push(ent(from + i, term, big ? SEGMENT_BYTES / 3 : rng.int(200)));
          s.append(ents);
          model = [...model.slice(0, from - base - 1), ...ents];
        } else if (op < 9 && model.length > 0) {
          const to = base + 1 + rng.int(model.length);
          s.compact(to);
          baseTerm = model[to - base - 1].term;
          model = model.slice(to - base);
          base = to;
        } else if (rng.int(4) === 0) {
          base += rng.int(1000);
          baseTerm = ++term;
          s.reset(base, baseTerm);
          model = [];
        }
        const where = `seed ${seed} step ${step}`;
        assert.equal(s.baseIndex(), base, where);
        assert.equal(s.lastIndex(), base + model.length, where);
        assert.equal(s.term(base), baseTerm, where);
        if (model.length > 0) {
          const lo = base + 1 + rng.int(model.length);
          const hi = lo + rng.int(base + model.length - lo + 1) + 1;
          const max = rng.int(3) === 0 ? rng.int(2000) : Infinity;
          let size = 0;
          const want = model.slice(lo - base - 1, hi - base - 1).filter((e, i) => {
            size += e.data.length;
            return i === 0 || size <= max;
          });
          // Sizes only grow along the slice, so this keeps a prefix.
          assert.deepEqual(plain(s.entries(lo, hi, max)), plain(want), where);
          const i = base + 1 + rng.int(model.length);
          assert.equal(s.term(i), model[i - base - 1].term, where);
        }
      }
    }
  });
});
