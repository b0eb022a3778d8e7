// sortPositions (the sliced sort of a shaped Range's hits) against Array.prototype.sort's stable order.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { seededRandom } from "@etcd-ts/raft";
import { sortPositions } from "./range-shaping.js";

describe("sortPositions", () => {
  it("orders positions as a stable sort does, in slices of bounded work", () => {
    const rand = seededRandom(4);
    for (let round = 0; round < 200; round++) {
      const n = Math.floor(rand() * (round % 20 === 0 ? 5000 : 60));
      // Few distinct values, so that many are equal and the order among them matters.
      const distinct = 1 + Math.floor(rand() * 10);
      const values = Array.from({ length: n }, () => Math.floor(rand() * distinct) * 1000);
      const descend = rand() < 0.5;
      const slice = 1 + Math.floor(rand() * 300);
      const sorting = sortPositions(n, (a, b) => values[a]! - values[b]!, descend, slice);
      let slices = 0;
      let step = sorting.next();
      while (!step.done) {
        slices++;
        step = sorting.next();
      }
      const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
        descend ? values[b]! - values[a]! : values[a]! - values[b]!,
      );
      assert.deepEqual([...step.value], expected, `round ${round}`);
      // A slice sorts or merges about `slice` positions: the whole is a merge sort's passes.
      const passes = Math.max(0, Math.ceil(Math.log2(Math.max(1, n / slice))));
      assert.ok(
        slices <= Math.ceil(n / slice) * (passes + 1) + passes + 1,
        `round ${round}: ${slices} slices`,
      );
    }
  });
});
