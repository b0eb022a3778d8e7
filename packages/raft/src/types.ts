// The Raft protocol's data: what the core reads, persists and sends.
// Shapes follow etcd-io/raft's raftpb so that readers of that code find their way here.
// Node IDs are bigint: they are etcd's 64-bit member IDs. Terms and indexes are plain
// numbers: no log reaches 2^53 entries.

export type NodeId = bigint;

/** 0 is never a valid node ID: it means "nobody" (no vote, no leader). */
export const NONE: NodeId = 0n;

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to Raft. An empty Normal entry is the no-op a new leader appends. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The application's state machine image; opaque to Raft. */
  data: Uint8Array;
}

export enum ConfChangeType {
  /** Adds a voter, or promotes an existing learner to voter. */
  AddNode = 0,
  RemoveNode = 1,
  AddLearnerNode = 2,
}

export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to Raft (the member's URLs, say). */
  context: Uint8Array;
}

export enum MessageType {
  /** Local: start an election (campaign). */
  MsgHup = 0,
  /** Local: the leader should send heartbeats. */
  MsgBeat = 1,
  MsgProp = 2,
  MsgApp = 3,
  MsgAppResp = 4,
  MsgVote = 5,
  MsgVoteResp = 6,
  MsgSnap = 7,
  MsgHeartbeat = 8,
  MsgHeartbeatResp = 9,
  /** Local: the transport could not reach `from`'s peer. */
  MsgUnreachable = 10,
  /** Local: the transport reports whether a snapshot reached the peer (`reject` = failed). */
  MsgSnapStatus = 11,
  /** Local: the leader checks it still hears from a quorum. */
  MsgCheckQuorum = 12,
  MsgTransferLeader = 13,
  MsgTimeoutNow = 14,
  MsgReadIndex = 15,
  MsgReadIndexResp = 16,
  MsgPreVote = 17,
  MsgPreVoteResp = 18,
}

export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: number;
  /** For MsgApp: term of the entry at `index` (the entry before `entries`). */
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  /** On a rejected MsgAppResp: the follower's hint for where to probe next. */
  rejectHint: number;
  /**
   * ReadIndex request context, carried through heartbeats and responses; on a MsgVote, the
   * marker of a campaign started by leadership transfer (which overrides leader leases).
   */
  context?: Uint8Array;
}

export enum StateRole {
  Follower = 0,
  Candidate = 1,
  Leader = 2,
  PreCandidate = 3,
}

export interface SoftState {
  lead: NodeId;
  role: StateRole;
}

export interface ReadState {
  /** Reads may be served once the local applied index reaches this. */
  index: number;
  /** The context given to readIndex(), to match the answer to its request. */
  requestCtx: Uint8Array;
}

/**
 * What the core hands out in one round. The caller must, in this order:
 * persist `hardState`, `entries` and `snapshot` (durably when `mustSync`), then send
 * `messages`, then apply `snapshot` and `committedEntries`, then call `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  readStates: ReadState[];
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  mustSync: boolean;
}
