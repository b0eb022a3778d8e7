import { majorityCommittedIndex, majorityVoteResult, VoteResult } from "../quorum/majority.js";
import type { ConfState, NodeId } from "../types.js";
import type { Progress } from "./progress.js";

/**
 * The configuration (voters and learners, changed one member at a time) and the leader's
 * per-peer progress, plus the votes of the election in progress.
 */
export class ProgressTracker {
  readonly voters = new Set<NodeId>();
  readonly learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  readonly maxInflight: number;
  private readonly scratch: number[] = [];
  // Allocated once: committed() runs on every append acknowledgement.
  private readonly matchOf = (id: NodeId): number | undefined => this.progress.get(id)?.match;

  constructor(maxInflight: number) {
    this.maxInflight = maxInflight;
  }

  confState(): ConfState {
    return { voters: [...this.voters].sort(ascending), learners: [...this.learners].sort(ascending) };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.has(id);
  }

  /** The highest index a majority of voters hold. */
  committed(): number {
    return majorityCommittedIndex(this.voters, this.matchOf, this.scratch);
  }

  /** Whether a quorum of voters (counting the leader itself) was heard from recently. */
  quorumActive(): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) if (!pr.isLearner) active.set(id, pr.recentActive);
    return majorityVoteResult(this.voters, active) === VoteResult.Won;
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: majorityVoteResult(this.voters, this.votes) };
  }
}

function ascending(a: NodeId, b: NodeId): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
