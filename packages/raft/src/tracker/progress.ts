import { Inflights } from "./inflights.js";

/**
 * How the leader currently talks to a follower:
 * - probe: one MsgApp per heartbeat interval until the follower's log position is found;
 * - replicate: optimistic pipelining, bounded by the inflights window;
 * - snapshot: a snapshot is on its way; nothing else is sent until it is reported.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** The leader's view of one peer's log (etcd-io/raft's tracker.Progress). */
export class Progress {
  /** Highest index known to be in the peer's log. */
  match = 0;
  /** Index of the next entry to send. */
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from within the current election timeout (check-quorum, snapshot sends). */
  recentActive = false;
  /**
   * In probe state: a probe is in flight, wait for its answer (or a heartbeat response).
   * In replicate state: the inflights window is full.
   */
  msgAppFlowPaused = false;
  /** The highest commit index sent to the peer (in a MsgApp or heartbeat) since the last probe. */
  sentCommit = 0;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      // The snapshot was delivered (or given up on): probe from just past it.
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
    // Whatever was sent beyond next-1 may not have arrived.
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
    this.next = snapshotIndex + 1;
  }

  /** Bookkeeping after sending a MsgApp carrying `entries` entries, the last being lastIndex. */
  sentEntries(entries: number, lastIndex: number): void {
    if (this.state === "replicate") {
      if (entries > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === "probe") {
      this.msgAppFlowPaused = true;
    }
  }

  /** An acknowledgement up to `n`; false if it tells nothing new (stale or duplicate). */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    if (this.next < n + 1) this.next = n + 1;
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * A rejection of the MsgApp whose previous index was `rejected`, with the follower's hint
   * `matchHint` (adjusted by the leader's own findConflictByTerm). Returns false for a
   * stale rejection.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      // A pipelined MsgApp failed: fall back to just past the known match.
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the rejection of the latest probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * Whether sending commit index `commit` could advance the peer's commit: it is newer than
   * what was sent, and what was sent did not already cover everything the peer holds
   * (a follower commits at most up to the last entry it got from us, next-1).
   */
  canBumpCommit(commit: number): boolean {
    return commit > this.sentCommit && this.sentCommit < this.next - 1;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
      case "replicate":
        return this.msgAppFlowPaused;
      case "snapshot":
        return true;
    }
  }
}
