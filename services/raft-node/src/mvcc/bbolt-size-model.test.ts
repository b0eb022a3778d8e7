import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BBOLT_PAGE_SIZE, BboltSizeModel, splitStarts } from "./bbolt-size-model.js";
import { encodeKeyValue } from "./kv-codec.js";
import { revisionKey } from "./revision.js";

/** What etcd stores for a put of `value` to `key` at revision `rev` (first version). */
function put(model: BboltSizeModel, rev: number, key: string, value: string): void {
  const kv = encodeKeyValue({
    key: Buffer.from(key),
    createRevision: rev,
    modRevision: rev,
    version: 1,
    value: Buffer.from(value),
    lease: 0n,
  });
  model.put(revisionKey(rev, 0), kv.length);
  model.touch();
  model.commit();
}

const pages = (bytes: number) => bytes / BBOLT_PAGE_SIZE;

describe("BboltSizeModel", () => {
  // Measured on etcd 3.4.23 (one etcdctl put per commit, `endpoint status` between): etcd's
  // TestCtlV3Alarm writes, with --quota-backend-bytes 13 pages.
  it("grows page by page as etcd 3.4's bbolt file does for TestCtlV3Alarm's writes", () => {
    const model = new BboltSizeModel();
    assert.equal(pages(model.size), 5);
    assert.equal(pages(model.sizeInUse), 4);
    put(model, 2, "1st_test", "a".repeat(64));
    assert.equal(pages(model.size), 5, "a small key bucket stays inline");
    const big = "b".repeat(4096);
    const sizes: number[] = [];
    for (let rev = 3; rev <= 5; rev++) {
      put(model, rev, "2nd_test", big);
      sizes.push(pages(model.size));
    }
    assert.deepEqual(sizes, [7, 10, 14]);
    // The next 4 KiB put's cost (256 + key + value) no longer fits under 13 pages: NOSPACE.
    assert.ok(model.size + 256 + 8 + 4096 >= 13 * BBOLT_PAGE_SIZE);
  });

  it("after a defrag the file holds the live revisions only, and the freed pages are free", () => {
    const model = new BboltSizeModel();
    put(model, 2, "1st_test", "a".repeat(64));
    for (let rev = 3; rev <= 5; rev++) put(model, rev, "2nd_test", "b".repeat(4096));
    const kvLength = (value: string, rev: number) =>
      encodeKeyValue({
        key: Buffer.from(rev === 2 ? "1st_test" : "2nd_test"),
        createRevision: rev,
        modRevision: rev,
        version: 1,
        value: Buffer.from(value),
        lease: 0n,
      }).length;
    const revisions = [2, 3, 4, 5].map((rev) => ({
      key: revisionKey(rev, 0),
      valueLength: kvLength(rev === 2 ? "a".repeat(64) : "b".repeat(4096), rev),
    }));
    model.defragment(revisions);
    // etcd 3.4.23 after `etcdctl defrag` of the same four revisions: 36864 and 28672.
    assert.equal(pages(model.size), 9);
    assert.equal(pages(model.sizeInUse), 7);
    model.touch(); // alarm disarm
    model.commit();
    assert.equal(pages(model.sizeInUse), 8);
    put(model, 6, "4th_test", "aaaa");
    // etcd: 57344, all in use (the last leaf splits in two, under a new branch page).
    assert.equal(pages(model.size), 14);
    assert.equal(pages(model.sizeInUse), 14);
  });

  it("reuses pages freed by compaction instead of growing", () => {
    const model = new BboltSizeModel();
    for (let rev = 2; rev < 2002; rev++) put(model, rev, `k${rev % 10}`, "v".repeat(100));
    const grown = model.size;
    // Compact everything but the last ten revisions, in one commit per thousand deletes.
    for (let rev = 2; rev < 1992; rev++) {
      model.delete(revisionKey(rev, 0));
      if (rev % 1000 === 0) {
        model.touch();
        model.commit();
      }
    }
    model.touch();
    model.commit();
    // Pages freed by a commit count as in use until the next one (bbolt's pending pages).
    model.touch();
    model.commit();
    assert.equal(model.size, grown, "compaction frees pages, it never shrinks the file");
    assert.ok(model.sizeInUse < grown / 4, `${model.sizeInUse} in use of ${grown}`);
    for (let rev = 2002; rev < 2500; rev++) put(model, rev, `k${rev % 10}`, "v".repeat(100));
    assert.equal(model.size, grown, "new revisions go to the freed pages");
  });

  // The crash seen in mvcc/crash.test: a commit whose deletes empty or shrink several sibling
  // leaves at once. Rebalancing merged a leaf into its sibling, then rebalanced the merged-away
  // leaf too (it was still in the snapshot of its parent's children): its index was -1, there
  // was no sibling, "Cannot set properties of undefined (setting 'dirty')".
  it("survives a commit that shrinks or empties neighbouring leaves, then grows again", () => {
    const model = new BboltSizeModel();
    for (let rev = 2; rev < 602; rev++) put(model, rev, `k${rev % 10}`, "v".repeat(100));
    // Keep one revision in each of the first leaves' ranges: they all fall under a quarter page.
    for (let rev = 2; rev < 600; rev++) if (rev % 37 !== 0) model.delete(revisionKey(rev, 0));
    model.touch();
    model.commit();
    for (let rev = 602; rev < 1200; rev++) put(model, rev, `k${rev % 10}`, "v".repeat(100));
    assert.ok(model.sizeInUse <= model.size);
  });

  it("compacts everything away, reopens empty, then writes again", () => {
    const model = new BboltSizeModel();
    for (let rev = 2; rev < 1002; rev++) put(model, rev, `k${rev}`, "v".repeat(200));
    const grown = model.size;
    for (let rev = 2; rev < 1002; rev++) model.delete(revisionKey(rev, 0));
    model.touch();
    model.commit();
    assert.equal(model.size, grown, "deleting never shrinks the file");
    for (let rev = 1002; rev < 1500; rev++) put(model, rev, `k${rev}`, "v".repeat(200));
    model.defragment([]); // a restart with nothing left to load
    assert.equal(pages(model.size), 5, "as a fresh member's file");
    for (let rev = 1500; rev < 2500; rev++) put(model, rev, `k${rev}`, "v".repeat(200));
    assert.ok(model.size > 4 * BBOLT_PAGE_SIZE);
  });

  it("never throws on random interleavings of puts, compactions and reopens", () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const model = new BboltSizeModel();
    const live = new Map<number, number>();
    let rev = 2;
    let highest = 0;
    for (let round = 0; round < 300; round++) {
      const r = random();
      if (r < 0.6) {
        const n = 1 + Math.floor(random() * 80);
        for (let i = 0; i < n; i++, rev++) {
          const length = 20 + Math.floor(random() * 3000);
          model.put(revisionKey(rev, 0), length);
          live.set(rev, length);
        }
      } else if (r < 0.95) {
        for (const k of [...live.keys()]) {
          if (random() < 0.9) {
            model.delete(revisionKey(k, 0));
            live.delete(k);
          }
        }
      } else {
        model.defragment([...live].map(([k, valueLength]) => ({ key: revisionKey(k, 0), valueLength })));
        highest = 0;
      }
      model.touch();
      model.commit();
      assert.ok(model.sizeInUse <= model.size);
      assert.ok(model.size >= highest, "the file never shrinks without a defrag");
      highest = model.size;
    }
  });

  it("degrades to an upper bound instead of throwing when the tree model fails", () => {
    const model = new BboltSizeModel();
    for (let rev = 2; rev < 200; rev++) put(model, rev, `k${rev}`, "v".repeat(200));
    const before = model.size;
    const broken = model as unknown as { rebalance: () => void };
    broken.rebalance = () => {
      throw new Error("unmodelled state");
    };
    for (let rev = 200; rev < 300; rev++) put(model, rev, `k${rev}`, "v".repeat(200));
    assert.ok(model.size > before, "writes still grow the estimate");
    assert.equal(model.sizeInUse, model.size, "and nothing counts as free");
    // A defrag (or a restart) rebuilds the tree and leaves the degraded mode.
    Reflect.deleteProperty(broken, "rebalance");
    model.defragment([{ key: revisionKey(2, 0), valueLength: 300 }]);
    assert.equal(pages(model.size), 5);
  });

  it("splits a node where bbolt does, in one pass however many parts", () => {
    // bbolt's node.split, as the model first ran it: split the tail off again for every part.
    const reference = (sizes: number[]): number[] => {
      const starts = [0];
      let rest = sizes;
      let offset = 0;
      const pageSize = (elements: number[]) => elements.reduce((a, b) => a + b, 16);
      while (rest.length > 4 && pageSize(rest) >= BBOLT_PAGE_SIZE) {
        let index = 0;
        let size = 16;
        for (let i = 0; i < rest.length - 2; i++) {
          index = i;
          if (index >= 2 && size + rest[i]! > BBOLT_PAGE_SIZE * 0.9) break;
          size += rest[i]!;
        }
        offset += index;
        starts.push(offset);
        rest = rest.slice(index);
      }
      return starts;
    };
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let trial = 0; trial < 300; trial++) {
      const sizes = Array.from({ length: 1 + random(400) }, () => 33 + random(trial % 3 === 0 ? 5000 : 400));
      assert.deepEqual(
        splitStarts(sizes.length, (i) => sizes[i]!),
        reference(sizes),
        `sizes ${sizes.join(",")}`,
      );
    }
    // A defrag commit's 10,000-element leaf: parts of 11 elements (313 bytes each), the last
    // one taking the 12th element that is too few to split off.
    const starts = splitStarts(10_000, () => 313);
    assert.equal(starts.length, 909);
    assert.deepEqual(starts.slice(0, 3), [0, 11, 22]);
    assert.equal(starts.at(-1), 9_988);
  });
});
