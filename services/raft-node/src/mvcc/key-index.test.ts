import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyIndex, RevisionSet } from "./key-index.js";
import { TreeIndex } from "./tree-index.js";

/** etcd's key_index.go example: put(1.0) put(2.0) tombstone(3.0) put(4.0) tombstone(5.0). */
function example(): KeyIndex {
  const ki = new KeyIndex("foo");
  ki.put(1, 0);
  ki.put(2, 0);
  assert.equal(ki.tombstone(3, 0), true);
  ki.put(4, 0);
  assert.equal(ki.tombstone(5, 0), true);
  return ki;
}

describe("key index", () => {
  it("finds the revision visible at any revision, with created and version", () => {
    const ki = new KeyIndex("k");
    ki.put(2, 0);
    ki.put(4, 1);
    ki.tombstone(6, 0);
    ki.put(8, 0);
    assert.equal(ki.get(1), undefined);
    assert.deepEqual(ki.get(3), { main: 2, sub: 0, created: 2, version: 1 });
    assert.deepEqual(ki.get(5), { main: 4, sub: 1, created: 2, version: 2 });
    assert.equal(ki.get(6), undefined);
    assert.equal(ki.get(7), undefined);
    assert.deepEqual(ki.get(9), { main: 8, sub: 0, created: 8, version: 1 });
    assert.equal(ki.tombstone(9, 0), true);
    assert.equal(ki.tombstone(10, 0), false, "tombstone of a deleted key");
  });

  it("compacts as etcd does, returning what to delete and keeping the tombstone at the compacted revision", () => {
    const cases: [number, string, number[]][] = [
      // [atRev, remaining generations, removed triples]
      [2, "[2,3t][4,5t][]", [1, 0, 0]],
      [4, "[4,5t][]", [1, 0, 0, 2, 0, 0, 3, 0, 1]],
      [5, "[5t][]", [1, 0, 0, 2, 0, 0, 3, 0, 1, 4, 0, 0]],
      [6, "", [1, 0, 0, 2, 0, 0, 3, 0, 1, 4, 0, 0, 5, 0, 1]],
    ];
    for (const [atRev, remaining, removed] of cases) {
      const ki = example();
      const got: number[] = [];
      ki.compact(atRev, got);
      assert.deepEqual(got, removed, `removed at ${atRev}`);
      assert.equal(describeGenerations(ki), remaining, `generations at ${atRev}`);
      assert.equal(ki.isEmpty, remaining === "");
    }
  });

  it("keeps for hashing the revision visible at a revision, never a tombstone", () => {
    const kept = (atRev: number) => {
      const set = new RevisionSet();
      example().keep(atRev, set);
      return [1, 2, 3, 4, 5].filter((main) => set.has(main, 0));
    };
    assert.deepEqual(kept(1), [1]);
    assert.deepEqual(kept(2), [2]);
    assert.deepEqual(kept(3), []);
    assert.deepEqual(kept(4), [4]);
    assert.deepEqual(kept(5), []);
    assert.deepEqual(kept(6), []);
  });

  it("holds a live generation of one revision without arrays, and earlier revisions once written again", () => {
    const ki = new KeyIndex("k");
    ki.put(5, 2);
    assert.equal(ki.earlier, null, "one revision: no array");
    assert.deepEqual([ki.created, ki.version, ki.headMain, ki.headSub], [5, 1, 5, 2]);
    assert.equal(ki.isHead(5, 2), true);
    ki.put(7, 0);
    ki.put(9, 1);
    assert.deepEqual(ki.earlier, [5, 2, 7, 0]);
    assert.equal(ki.isHead(5, 2), false);
    assert.equal(ki.isHead(9, 1), true);
    assert.deepEqual(ki.get(6), { main: 5, sub: 2, created: 5, version: 1 });
    assert.deepEqual(ki.get(8), { main: 7, sub: 0, created: 5, version: 2 });
    assert.deepEqual(ki.get(9), { main: 9, sub: 1, created: 5, version: 3 });
    assert.equal(ki.get(4), undefined);
    ki.tombstone(10, 0);
    assert.deepEqual([ki.isLive, ki.created, ki.version, ki.headMain, ki.earlier], [false, 0, 0, 0, null]);
    assert.equal(ki.isHead(0, 0), false, "a deleted key has no head");
    assert.equal(describeGenerations(ki), "[5,7,9,10t][]");
    ki.put(11, 0);
    assert.deepEqual(ki.get(12), { main: 11, sub: 0, created: 11, version: 1 });
    assert.equal(ki.get(10), undefined, "deleted at its tombstone");
    assert.deepEqual(ki.get(9), { main: 9, sub: 1, created: 5, version: 3 });
  });

  it("compacts the live generation back into its fields", () => {
    const ki = new KeyIndex("k");
    for (const main of [2, 3, 4, 5]) ki.put(main, 0);
    const removed: number[] = [];
    ki.compact(4, removed);
    assert.deepEqual(removed, [2, 0, 0, 3, 0, 0]);
    assert.deepEqual(ki.earlier, [4, 0]);
    assert.deepEqual(ki.get(4), { main: 4, sub: 0, created: 2, version: 3 });
    ki.compact(5, removed);
    assert.equal(ki.earlier, null, "back to one revision: no array");
    assert.deepEqual([ki.created, ki.version, ki.headMain], [2, 4, 5]);
    const before = removed.length;
    ki.compact(9, removed);
    assert.equal(removed.length, before, "a single live revision is never superseded");
    const kept = new RevisionSet();
    ki.keep(9, kept);
    assert.equal(kept.has(5, 0), true);
    const notYet = new RevisionSet();
    ki.keep(4, notYet);
    assert.equal(notYet.size, 0, "nothing kept before the key's first surviving revision");
  });

  it("packs revisions into a set, falling back to strings when they do not fit", () => {
    const set = new RevisionSet();
    set.add(5, 1);
    set.add(2 ** 45, 3);
    set.add(7, 5000);
    assert.equal(set.has(5, 1), true);
    assert.equal(set.has(5, 2), false);
    assert.equal(set.has(2 ** 45, 3), true);
    assert.equal(set.has(7, 5000), true);
    assert.equal(set.size, 3);
  });
});

describe("tree index", () => {
  it("ranges over a key, [start, end), from-key, with limit and total", () => {
    const tree = new TreeIndex();
    for (const [i, k] of ["a", "b", "b/1", "c"].entries()) tree.put(k, i + 2, 0, 0n);
    tree.tombstone("b", 6, 0);
    const at = (start: string, end: string | undefined, rev: number, limit = 0) => {
      const r = tree.revisions({ start, end }, rev, limit);
      return [r.hits.map((h) => h.index.key), r.total];
    };
    assert.deepEqual(at("b", undefined, 5), [["b"], 1]);
    assert.deepEqual(at("b", undefined, 6), [[], 0]);
    assert.deepEqual(at("a", "c", 5), [["a", "b", "b/1"], 3]);
    assert.deepEqual(at("a", "c", 6), [["a", "b/1"], 2]);
    assert.deepEqual(at("b", "", 6), [["b/1", "c"], 2]);
    assert.deepEqual(at("a", "", 6, 1), [["a"], 3]);
    assert.deepEqual(at("c", "a", 6), [[], 0]);
    assert.equal(tree.count({ start: "a", end: "" }, 3), 2);
  });

  it("compacts in slices and drops keys left empty", () => {
    const tree = new TreeIndex();
    for (const k of ["a", "b", "c", "d", "e"]) tree.put(k, 2, 0, 0n);
    tree.tombstone("b", 3, 0);
    tree.tombstone("d", 3, 0);
    const removed: number[] = [];
    let from: string | undefined = "";
    let slices = 0;
    while (from !== undefined) {
      from = tree.compactSlice(4, from, 2, removed);
      slices++;
    }
    assert.equal(slices, 3);
    assert.equal(tree.size, 3);
    assert.equal(removed.length / 3, 4);
  });
});

function describeGenerations(ki: KeyIndex): string {
  if (ki.isEmpty) return "";
  const gens = ki.generations();
  return gens
    .map((g, gi) => {
      const revs: string[] = [];
      for (let i = 0; i < g.revs.length; i += 2) {
        const tomb = gi < gens.length - 1 && i === g.revs.length - 2;
        revs.push(`${g.revs[i]}${tomb ? "t" : ""}`);
      }
      return `[${revs.join(",")}]`;
    })
    .join("");
}
