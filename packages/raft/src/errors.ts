// Errors the core raises. Storage errors mirror etcd-io/raft's sentinel errors so that a
// Storage implementation (the WAL-backed one in raft-node) can signal the same conditions.

export class RaftError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export type ProposalDropReason =
  | "no leader"
  | "leadership transfer in progress"
  | "conf change pending"
  | "not a member"
  | "too many uncommitted entries";

/** A proposal (or read request) was refused; nothing was appended, the caller may retry. */
export class ProposalDroppedError extends RaftError {
  readonly reason: ProposalDropReason;
  constructor(reason: ProposalDropReason) {
    super(`raft proposal dropped: ${reason}`);
    this.reason = reason;
  }
}

/** The requested index is at or below the storage's compaction point. */
export class CompactedError extends RaftError {
  constructor(message = "requested index is unavailable due to compaction") {
    super(message);
  }
}

/** The requested index is beyond the last index the storage holds. */
export class UnavailableError extends RaftError {
  constructor(message = "requested entry at index is unavailable") {
    super(message);
  }
}

/** A snapshot older than the one the storage already holds. */
export class SnapshotOutOfDateError extends RaftError {
  constructor(message = "requested index is older than the existing snapshot") {
    super(message);
  }
}

/** The application is still producing a snapshot; the leader retries later. */
export class SnapshotTemporarilyUnavailableError extends RaftError {
  constructor(message = "snapshot is temporarily unavailable") {
    super(message);
  }
}
