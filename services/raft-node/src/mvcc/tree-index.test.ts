// The compact TreeIndex against a plain model: a Map of KeyIndex objects walked in sorted key
// order (what the index was before rows), driven by the same random puts, deletes and compactions.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BboltSizeModel } from "./bbolt-size-model.js";
import { decodeCheckpoint, encodeCheckpoint } from "./index-checkpoint.js";
import { KeyIndex, type KeyRevision, RevisionSet } from "./key-index.js";
import { type KeyBounds, TreeIndex } from "./tree-index.js";

class ModelIndex {
  readonly keys = new Map<string, KeyIndex>();

  sorted(): KeyIndex[] {
    return [...this.keys.keys()].sort().map((k) => this.keys.get(k)!);
  }

  put(key: string, main: number, sub: number, lease: bigint): void {
    let ki = this.keys.get(key);
    if (ki === undefined) {
      ki = new KeyIndex(key);
      this.keys.set(key, ki);
    }
    ki.put(main, sub);
    ki.lease = lease;
  }

  tombstone(key: string, main: number, sub: number): boolean {
    return this.keys.get(key)?.tombstone(main, sub) ?? false;
  }

  inBounds(bounds: KeyBounds): KeyIndex[] {
    const { start, end } = bounds;
    return this.sorted().filter((ki) =>
      end === undefined ? ki.key === start : ki.key >= start && (end === "" || ki.key < end),
    );
  }

  revisions(bounds: KeyBounds, atRev: number): { key: string; rev: KeyRevision }[] {
    const out: { key: string; rev: KeyRevision }[] = [];
    for (const ki of this.inBounds(bounds)) {
      const rev = ki.get(atRev);
      if (rev !== undefined) out.push({ key: ki.key, rev });
    }
    return out;
  }

  compactSlice(atRev: number, fromKey: string, maxKeys: number, removed: number[]): string | undefined {
    const keys = this.sorted().filter((ki) => ki.key >= fromKey);
    for (const ki of keys.slice(0, maxKeys)) {
      ki.compact(atRev, removed);
      if (ki.isEmpty) this.keys.delete(ki.key);
    }
    return keys[maxKeys]?.key;
  }
}

/** A small deterministic generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function history(ki: KeyIndex): unknown {
  return {
    key: ki.key,
    lease: ki.isLive ? ki.lease : 0n,
    live: ki.isLive,
    generations: ki.generations().map((g) => [g.created, g.version, g.revs]),
  };
}

function assertSame(
  index: TreeIndex,
  model: ModelIndex,
  rev: number,
  rand: () => number,
  keyOf: (n: number) => string,
) {
  const all = model.sorted();
  assert.equal(index.size, all.length, "size");
  assert.equal(index.liveCount(), all.filter((ki) => ki.isLive).length, "live keys");
  assert.deepEqual([...index.values()].map(history), all.map(history), "histories");
  for (let q = 0; q < 20; q++) {
    const a = keyOf(Math.floor(rand() * 3000));
    const b = keyOf(Math.floor(rand() * 3000));
    const shape = Math.floor(rand() * 3);
    const bounds: KeyBounds =
      shape === 0 ? { start: a, end: undefined } : shape === 1 ? { start: a, end: "" } : { start: a, end: b };
    const atRev = 1 + Math.floor(rand() * rev);
    const expected = model.revisions(bounds, atRev);
    const limit = Math.floor(rand() * 5);
    const got = index.revisions(bounds, atRev, limit);
    assert.equal(got.total, expected.length, "total");
    const want = limit > 0 ? expected.slice(0, limit) : expected;
    assert.deepEqual(
      got.hits.map((h) => ({
        key: h.index.key,
        rev: { main: h.main, sub: h.sub, created: h.created, version: h.version },
      })),
      want,
      `revisions ${JSON.stringify(bounds)} at ${atRev}`,
    );
    // revisionsEach a batch at a time gives the same revisions, as numbers.
    const each: KeyRevision[] = [];
    const batch = 1 + Math.floor(rand() * 40);
    for (let after: string | undefined, done = false; !done; ) {
      const got = index.revisionsEach(bounds, atRev, after, batch, (main, sub, created, version) =>
        each.push({ main, sub, created, version }),
      );
      after = got.last;
      done = got.done;
    }
    assert.deepEqual(
      each,
      expected.map((e) => e.rev),
      `revisionsEach ${JSON.stringify(bounds)} at ${atRev} by ${batch}`,
    );
    assert.equal(index.count(bounds, atRev), expected.length, "count");
    assert.deepEqual(
      index.liveKeys(bounds).map((ki) => ki.key),
      model
        .inBounds(bounds)
        .filter((ki) => ki.isLive)
        .map((ki) => ki.key),
      "live keys in bounds",
    );
  }
  const keepAt = 1 + Math.floor(rand() * rev);
  const kept = index.keep(keepAt);
  let expectedKept = 0;
  for (const ki of all) {
    const one = new RevisionSet();
    ki.keep(keepAt, one);
    expectedKept += one.size;
  }
  assert.equal(kept.size, expectedKept, "keep");
}

describe("compact tree index", () => {
  for (const seed of [1, 2, 3]) {
    it(`answers as a map of KeyIndex objects under random writes and compactions (seed ${seed})`, () => {
      const rand = random(seed);
      const keyOf = (n: number) => `k${n.toString().padStart(5, "0")}`;
      const index = new TreeIndex();
      const model = new ModelIndex();
      let rev = 1;
      // In order first (rows appended to full leaves), then anywhere.
      for (let n = 0; n < 600; n++, rev++) {
        index.put(keyOf(n * 3), rev, 0, 0n);
        model.put(keyOf(n * 3), rev, 0, 0n);
      }
      for (let round = 0; round < 6; round++) {
        for (let op = 0; op < 1500; op++, rev++) {
          const key = keyOf(Math.floor(rand() * 3000));
          const roll = rand();
          // A txn of several writes at one main revision, to exercise sub revisions.
          const subs = roll < 0.1 ? 3 : 1;
          for (let sub = 0; sub < subs; sub++) {
            const k = sub === 0 ? key : keyOf(Math.floor(rand() * 3000));
            if (roll < 0.7) {
              const lease = rand() < 0.2 ? BigInt(Math.floor(rand() * 5)) - 2n : 0n;
              // The head a put reports is the model's live head before it (a row or a history).
              const before = model.keys.get(k);
              const previous = { live: true, created: -1, version: -1, headMain: -1, headSub: -1 };
              index.put(k, rev, sub, lease, previous);
              if (before?.isLive) {
                const { created, version, headMain, headSub } = before;
                assert.deepEqual(previous, { live: true, created, version, headMain, headSub }, k);
              } else assert.equal(previous.live, false, k);
              model.put(k, rev, sub, lease);
            } else {
              assert.equal(index.tombstone(k, rev, sub), model.tombstone(k, rev, sub), `tombstone ${k}`);
            }
          }
        }
        assertSame(index, model, rev, rand, keyOf);
        const compactAt = rev - Math.floor(rand() * 500);
        const slice = 1 + Math.floor(rand() * 400);
        const got: number[] = [];
        const want: number[] = [];
        let from: string | undefined = "";
        let modelFrom: string | undefined = "";
        while (from !== undefined) {
          from = index.compactSlice(compactAt, from, slice, got);
          modelFrom = model.compactSlice(compactAt, modelFrom!, slice, want);
          assert.equal(from, modelFrom, "resume key");
        }
        assert.deepEqual(got, want, "removed revisions");
        assertSame(index, model, rev, rand, keyOf);
      }
      // The checkpoint of a mixed index loads to the same answers.
      const image = encodeCheckpoint(
        {
          lastRow: rev,
          appliedIndex: 1,
          appliedTerm: 1,
          finishedCompact: 0,
          scheduledCompact: 0,
          modelSize: 0,
        },
        () => index.values(),
        index.size,
        { shape: new BboltSizeModel().shape(), leaves: () => [] },
      );
      const decoded = decodeCheckpoint(image);
      assert.ok(typeof decoded !== "string", String(decoded));
      const loaded = new TreeIndex();
      loaded.load(decoded.keys);
      assertSame(loaded, model, rev, rand, keyOf);
    });
  }

  it("hands out views that are snapshots: a later write does not change what a read found", () => {
    const index = new TreeIndex();
    index.put("a", 2, 0, 5n);
    const before = index.lookup("a")!;
    index.put("a", 3, 0, 0n);
    assert.equal(before.isHead(2, 0), true);
    assert.equal(before.lease, 5n);
    assert.equal(index.lookup("a")!.isHead(3, 0), true);
    assert.deepEqual(index.lookup("a")!.get(2), { main: 2, sub: 0, created: 2, version: 1 });
  });

  it("turns a history compacted down to one live revision back into a row, and keeps its lease", () => {
    const index = new TreeIndex();
    for (let n = 0; n < 300; n++) index.put(`k${n}`, n + 1, 0, 0n);
    index.put("k7", 400, 0, 3n);
    index.tombstone("k8", 401, 0);
    const removed: number[] = [];
    assert.equal(index.compactSlice(402, "", 1000, removed), undefined);
    assert.deepEqual(removed, [8, 0, 0, 9, 0, 0, 401, 0, 1]);
    assert.equal(index.size, 299);
    const k7 = index.lookup("k7")!;
    assert.equal(k7.isSingleRevision, true);
    assert.notEqual(index.lookup("k7"), k7, "a row: each read gets its own view");
    assert.deepEqual([k7.created, k7.version, k7.headMain, k7.lease], [8, 2, 400, 3n]);
    assert.equal(index.lookup("k8"), undefined);
  });
});
