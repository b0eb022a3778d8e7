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
      // Comparisons between two yields: the work of one slice.
      let compares = 0;
      let most = 0;
      const compare = (a: number, b: number) => {
        most = Math.max(most, ++compares);
        return values[a]! - values[b]!;
      };
      const sorting = sortPositions(n, compare, descend, slice);
      let step = sorting.next();
      while (!step.done) {
        compares = 0;
        step = sorting.next();
      }
      const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
        descend ? values[b]! - values[a]! : values[a]! - values[b]!,
      );
      assert.deepEqual([...step.value], expected, `round ${round}`);
      // A slice merges `slice` positions (a comparison each), or sorts runs of ~slice / 16.
      assert.ok(most <= 2 * slice + 64, `round ${round}: ${most} comparisons in a slice of ${slice}`);
    }
  });
});
