import type { NodeId } from "../types.js";

export enum VoteResult {
  Pending = 0,
  Lost = 1,
  Won = 2,
}

/**
 * The highest index acknowledged by a majority of `voters`, given each voter's acknowledged
 * index (missing = 0). An empty configuration commits everything, so that a node with no
 * voters never blocks (it cannot be leader anyway).
 */
export function majorityCommittedIndex(
  voters: ReadonlySet<NodeId>,
  acked: (id: NodeId) => number | undefined,
  scratch: number[] = [],
): number {
  const n = voters.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  scratch.length = n;
  let i = 0;
  for (const id of voters) scratch[i++] = acked(id) ?? 0;
  // Descending: the (floor(n/2)+1)-th largest index is held by a majority. Up to 7 voters (etcd's
  // advice, and its raft's cut-off too) an insertion sort in place: Array.prototype.sort copies
  // into a work array on every call, and this runs on every append acknowledgement.
  if (n <= 7) insertionSortDescending(scratch, n);
  else scratch.sort(descending);
  return scratch[n >> 1];
}

/** Tallies `votes` (true = granted) among `voters`; voters that have not answered are pending. */
export function majorityVoteResult(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  if (voters.size === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = Math.floor(voters.size / 2) + 1;
  if (granted >= q) return VoteResult.Won;
  if (granted + missing >= q) return VoteResult.Pending;
  return VoteResult.Lost;
}

function insertionSortDescending(a: number[], n: number): void {
  for (let i = 1; i < n; i++) {
    const v = a[i]!;
    let j = i - 1;
    while (j >= 0 && a[j]! < v) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = v;
  }
}

function descending(a: number, b: number): number {
  return b - a;
}
