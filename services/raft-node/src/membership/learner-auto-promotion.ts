// --experimental-learner-auto-promote (ours; etcd issue 15107 asked for it): which learners the
// leader promotes, and when. A learner is caught up once its Raft match index has stayed
// within `maxLagEntries` of the leader's own, and passed etcd's MemberPromote check (90% of
// the leader's), on every leader tick for `holdMs` without a break. Until it is promoted it is
// a Raft learner: it receives the log but never votes and never counts toward a quorum.
import { learnerInSync } from "./members-table.js";

export interface LearnerAutoPromotionOptions {
  /** How far (entries) behind the leader's match index a learner may be and count as caught up. */
  maxLagEntries: number;
  /** How long a learner must stay caught up before it is promoted. */
  holdMs: number;
}

export class LearnerAutoPromotion {
  /** When each learner was first seen caught up in its current streak. */
  private readonly caughtUpSince = new Map<bigint, number>();

  constructor(private readonly options: LearnerAutoPromotionOptions) {}

  /**
   * Called on each leader tick with every learner's match index: the learners to promote now.
   * A returned learner starts a new streak, so a promotion that fails is tried again one hold
   * later, not on every tick.
   */
  due(now: number, leaderMatch: number, learnerMatch: ReadonlyMap<bigint, number>): bigint[] {
    for (const id of this.caughtUpSince.keys()) if (!learnerMatch.has(id)) this.caughtUpSince.delete(id);
    const promote: bigint[] = [];
    for (const [id, match] of learnerMatch) {
      const caughtUp = leaderMatch - match <= this.options.maxLagEntries && learnerInSync(match, leaderMatch);
      if (!caughtUp) {
        this.caughtUpSince.delete(id);
        continue;
      }
      const since = this.caughtUpSince.get(id);
      if (since === undefined) this.caughtUpSince.set(id, now);
      else if (now - since >= this.options.holdMs) {
        promote.push(id);
        this.caughtUpSince.delete(id);
      }
    }
    return promote;
  }

  /** Leadership lost: a next term starts every streak over. */
  reset(): void {
    this.caughtUpSince.clear();
  }
}
