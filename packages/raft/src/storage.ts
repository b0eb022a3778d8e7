import { encodeConfChange } from "./codec.js";
import { EntryStore } from "./entry-store.js";
import { CompactedError, RaftError, SnapshotOutOfDateError, UnavailableError } from "./errors.js";
import {
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  NONE,
  type NodeId,
  type Snapshot,
} from "./types.js";

/**
 * The core's read-only view of the persisted log. The application writes to it (after
 * persisting a Ready) and the core reads from it. Entries at or below the last snapshot are
 * gone, except that the term of the snapshot's index stays known (`term(firstIndex() - 1)`).
 */
export interface Storage {
  /** The persisted hard state, and the configuration as of the storage's snapshot. */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), payload bounded by maxSize but at least one if any. */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

export function emptyConfState(): ConfState {
  return { voters: [], learners: [] };
}

/**
 * An in-memory Storage, as etcd-io/raft's MemoryStorage, its entries kept compactly
 * (EntryStore: payloads copied into shared buffers, no object per entry). The snapshot's
 * index and term stay known, so term lookups at the compaction point work.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: NONE, commit: 0 };
  private snap: Snapshot = {
    metadata: { index: 0, term: 0, confState: emptyConfState() },
    data: new Uint8Array(0),
  };
  private readonly store = new EntryStore();

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  firstIndex(): number {
    return this.store.baseIndex() + 1;
  }

  lastIndex(): number {
    return this.store.lastIndex();
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo <= this.store.baseIndex()) throw new CompactedError();
    if (hi > this.lastIndex() + 1) {
      throw new UnavailableError(`entries' hi(${hi}) is out of bound lastindex(${this.lastIndex()})`);
    }
    return this.store.entries(lo, hi, maxSize);
  }

  term(index: number): number {
    if (index < this.store.baseIndex()) throw new CompactedError();
    if (index > this.lastIndex()) throw new UnavailableError();
    return this.store.term(index);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the whole log with the snapshot's point. */
  applySnapshot(snap: Snapshot): void {
    if (this.snap.metadata.index >= snap.metadata.index) throw new SnapshotOutOfDateError();
    this.snap = snap;
    this.store.reset(snap.metadata.index, snap.metadata.term);
  }

  /**
   * Records a snapshot of the application's state as of `index` (which must be applied),
   * so that the leader can send it and the log can be compacted up to it.
   */
  createSnapshot(index: number, confState: ConfState | undefined, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new SnapshotOutOfDateError();
    if (index > this.lastIndex()) {
      throw new RaftError(`snapshot ${index} is out of bound lastindex(${this.lastIndex()})`);
    }
    this.snap = {
      metadata: {
        index,
        term: this.term(index),
        confState: confState ? cloneConfState(confState) : this.snap.metadata.confState,
      },
      data,
    };
    return this.snap;
  }

  /** Discards entries up to and including `compactIndex`; the caller has a snapshot covering them. */
  compact(compactIndex: number): void {
    if (compactIndex <= this.store.baseIndex()) throw new CompactedError();
    if (compactIndex > this.lastIndex()) {
      throw new RaftError(`compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    }
    this.store.compact(compactIndex);
  }

  /** See bootstrapStorage(). */
  static bootstrap(voters: readonly NodeId[], contextOf?: (voter: NodeId) => Uint8Array): MemoryStorage {
    const storage = new MemoryStorage();
    const entries = bootstrapEntries(voters, contextOf);
    storage.append(entries);
    storage.setHardState({ term: BOOTSTRAP_TERM, vote: NONE, commit: entries.length });
    // The index-0 snapshot is never sent to anyone (index 0's term is always known), so
    // its conf state only serves initialState().
    storage.snap.metadata.confState = { voters: [...voters], learners: [] };
    return storage;
  }

  /**
   * Persists entries handed out by a Ready. Entries the log already holds are replaced from
   * the first new index on (a new leader may overwrite an uncommitted suffix).
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0].index + entries.length - 1;
    if (last < first) return; // all already compacted
    if (first > entries[0].index) entries = entries.slice(first - entries[0].index);
    if (entries[0].index > this.lastIndex() + 1) {
      throw new RaftError(`missing log entry [last: ${this.lastIndex()}, append at: ${entries[0].index}]`);
    }
    // Copied: the store keeps no reference to the caller's entries or their (often
    // received-frame) buffers.
    this.store.append(entries);
  }
}

/** The term the bootstrap entries are written at; the first election is for term 2. */
export const BOOTSTRAP_TERM = 1;

/**
 * The log every founding member of a new cluster starts with: one committed AddNode entry
 * per initial voter (indexes 1..n, term 1). Writing membership into the log, as etcd does,
 * means a member added later can learn the whole configuration by replaying the log from
 * index 1, exactly like any other entry. `contextOf` gives each entry's context (etcd's holds
 * the member's URLs): what the application needs to replay it with nothing else at hand.
 */
export function bootstrapEntries(
  voters: readonly NodeId[],
  contextOf: (voter: NodeId) => Uint8Array = () => new Uint8Array(0),
): Entry[] {
  return voters.map((nodeId, i) => ({
    term: BOOTSTRAP_TERM,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddNode, nodeId, context: contextOf(nodeId) }),
  }));
}

/**
 * A MemoryStorage for a founding member: the bootstrap entries, committed, and a hard state
 * at term 1. The conf state already lists the voters, so the node knows its peers before
 * the application has applied the bootstrap entries (which it must still do, through
 * applyConfChange, like any committed ConfChange: re-adding a voter is a no-op).
 * A member joining an existing cluster starts instead from an empty `new MemoryStorage()`.
 */
export function bootstrapStorage(
  voters: readonly NodeId[],
  contextOf?: (voter: NodeId) => Uint8Array,
): MemoryStorage {
  if (voters.length === 0) throw new RaftError("bootstrap needs at least one voter");
  if (new Set(voters).size !== voters.length || voters.some((v) => v <= 0n || v >= 1n << 64n)) {
    throw new RaftError("bootstrap voters must be distinct positive integers");
  }
  return MemoryStorage.bootstrap(voters, contextOf);
}

export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}
