// The Raft data the WAL persists. These mirror packages/raft/src/types.ts field for field;
// they live here only until @etcd-ts/raft's public surface exports them, after which this
// module re-exports those types instead (structural typing makes both interchangeable).

export interface Entry {
  term: number;
  index: number;
  /** EntryType: 0 Normal, 1 ConfChange. */
  type: number;
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: number;
  commit: number;
}

export interface ConfState {
  voters: number[];
  learners: number[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}
