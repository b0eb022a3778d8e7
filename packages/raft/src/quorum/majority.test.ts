import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { majorityCommittedIndex, majorityVoteResult, VoteResult } from "./majority.js";

describe("majority quorum", () => {
  test("committed index is the highest index held by a majority", () => {
    const cases: Array<[number[], number]> = [
      [[5], 5],
      [[5, 3], 3],
      [[5, 3, 1], 3],
      [[1, 5, 3, 4], 3],
      [[9, 9, 1, 1, 2], 2],
      [[9, 8, 7, 1, 1], 7],
    ];
    for (const [acked, want] of cases) {
      const voters = new Set(acked.map((_, i) => BigInt(i + 1)));
      assert.equal(
        majorityCommittedIndex(voters, (id) => acked[Number(id) - 1]),
        want,
        JSON.stringify(acked),
      );
    }
  });

  test("every order of 1 to 9 voters, and a reused scratch, agree with a full sort", () => {
    // Insertion sort up to 7 voters, Array.prototype.sort above: both must pick the same index.
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % 6;
    };
    const scratch: number[] = [];
    for (let n = 1; n <= 9; n++)
      for (let round = 0; round < 200; round++) {
        const acked = Array.from({ length: n }, next);
        const want = [...acked].sort((a, b) => b - a)[n >> 1];
        const voters = new Set(acked.map((_, i) => BigInt(i + 1)));
        const got = majorityCommittedIndex(voters, (id) => acked[Number(id) - 1], scratch);
        assert.equal(got, want, JSON.stringify(acked));
      }
  });

  test("a voter without progress counts as 0", () => {
    assert.equal(
      majorityCommittedIndex(new Set([1n, 2n, 3n]), (id) => (id === 1n ? 7 : undefined)),
      0,
    );
  });

  test("vote results: won, lost, pending", () => {
    const voters = new Set([1n, 2n, 3n, 4n, 5n]);
    const votes = (granted: bigint[], rejected: bigint[]) =>
      new Map<bigint, boolean>([
        ...granted.map((id) => [id, true] as const),
        ...rejected.map((id) => [id, false] as const),
      ]);
    assert.equal(majorityVoteResult(voters, votes([1n, 2n, 3n], [])), VoteResult.Won);
    assert.equal(majorityVoteResult(voters, votes([1n, 2n], [3n])), VoteResult.Pending);
    assert.equal(majorityVoteResult(voters, votes([1n, 2n], [3n, 4n, 5n])), VoteResult.Lost);
    // Votes from non-voters are not counted.
    assert.equal(majorityVoteResult(voters, votes([1n, 2n, 9n], [])), VoteResult.Pending);
    assert.equal(majorityVoteResult(new Set([1n, 2n, 3n, 4n]), votes([1n, 2n], [3n])), VoteResult.Pending);
    assert.equal(majorityVoteResult(new Set([1n, 2n, 3n, 4n]), votes([1n, 2n], [3n, 4n])), VoteResult.Lost);
  });
});
