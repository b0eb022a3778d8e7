// The leader's lease timer: every poll it asks the lessor which leases expired and which
// checkpoints are due, and hands them to the proposer. The decisions are the lessor's (pure,
// on its clock); this only schedules them, and proposes nothing unless the lessor is primary.
import type { LeaseCheckpoint, Lessor } from "./lessor.js";

export interface LeaseProposer {
  /** Propose LeaseRevoke{id} through Raft. Failures are retried by the lessor's retry interval. */
  proposeRevoke(id: bigint): void;
  /** Propose one LeaseCheckpointRequest entry. */
  proposeCheckpoints(checkpoints: LeaseCheckpoint[]): void;
}

export interface PollTimer {
  setInterval(callback: () => void, intervalMs: number): unknown;
  clearInterval(handle: unknown): void;
}

const defaultTimer: PollTimer = {
  setInterval: (callback, intervalMs) => setInterval(callback, intervalMs).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

export class LeasePoller {
  private handle: unknown = null;

  constructor(
    private readonly lessor: Lessor,
    private readonly proposer: LeaseProposer,
    /** etcd's lessor loop period. */
    private readonly intervalMs = 500,
    private readonly timer: PollTimer = defaultTimer,
    /** LeaseCheckpoint entries per poll at most: 4 entries/s at the default period. */
    private readonly checkpointBatchesPerPoll = 2,
  ) {}

  start(): void {
    if (this.handle === null) this.handle = this.timer.setInterval(() => this.pollOnce(), this.intervalMs);
  }

  stop(): void {
    if (this.handle !== null) this.timer.clearInterval(this.handle);
    this.handle = null;
  }

  pollOnce(): void {
    if (!this.lessor.isPrimary) return;
    for (const id of this.lessor.expiredLeases()) this.proposer.proposeRevoke(id);
    // Every lease is checkpointed each interval, so the log's cost is bounded here: at most
    // this many entries (of up to 1000 leases each) per poll; beyond that leases wait, and
    // their interval stretches to leases / (batches * 1000) polls.
    for (let batch = 0; batch < this.checkpointBatchesPerPoll; batch++) {
      const checkpoints = this.lessor.dueCheckpoints();
      if (checkpoints.length === 0) break;
      this.proposer.proposeCheckpoints(checkpoints);
    }
  }
}
