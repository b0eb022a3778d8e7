import { entriesPayloadSize, limitSize } from "./entry-size.js";
import { CompactedError, RaftError, UnavailableError } from "./errors.js";
import type { Storage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";
import { UnstableLog } from "./unstable-log.js";

/**
 * The log as the core sees it: the persisted part (Storage) followed by the unstable part.
 * Tracks `committed` (known durable on a quorum), `applying` (handed to the application)
 * and `applied` (confirmed applied by advance()).
 */
export class RaftLog {
  readonly storage: Storage;
  readonly unstable: UnstableLog;
  committed: number;
  applying: number;
  applied: number;
  /** Bound on the payload bytes of committed entries handed out in one Ready. */
  readonly maxApplyingSize: number;

  constructor(storage: Storage, maxApplyingSize: number) {
    this.storage = storage;
    this.maxApplyingSize = maxApplyingSize;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.maybeTerm(this.lastIndex());
    if (t === undefined) throw new RaftError("term of the last index is unknown");
    return t;
  }

  /**
   * The term of the entry at `index`, or undefined when it is compacted or beyond the log.
   * The term at firstIndex()-1 stays known: appends are matched against it.
   */
  maybeTerm(index: number): number | undefined {
    const t = this.unstable.maybeTerm(index);
    if (t !== undefined) return t;
    if (index + 1 < this.firstIndex() || index > this.lastIndex()) return undefined;
    try {
      return this.storage.term(index);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return undefined;
      throw e;
    }
  }

  /** Like maybeTerm, but 0 for an unknown term (0 never matches a real entry's term). */
  zeroTermOnOutOfBounds(index: number): number {
    return this.maybeTerm(index) ?? 0;
  }

  matchTerm(index: number, term: number): boolean {
    return this.maybeTerm(index) === term;
  }

  /** Raft's election restriction: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * A follower's handling of a MsgApp's entries following (prevIndex, prevTerm): undefined
   * if the log does not hold that entry, else the index of the last new entry, after
   * dropping any conflicting suffix and advancing commit.
   */
  maybeAppend(prevIndex: number, prevTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new RaftError(
          `entry ${conflict} conflicts with committed entry [committed(${this.committed})]`,
        );
      }
      const start = conflict - (prevIndex + 1);
      this.append(start === 0 ? ents : ents.slice(start));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** Appends after any conflicting suffix; returns the new last index. */
  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    if (after < this.committed) {
      throw new RaftError(`after(${after}) is out of range [committed(${this.committed})]`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry in `ents` that is new or whose term differs from ours,
   * or 0 if all of them are already in the log.
   */
  findConflict(ents: Entry[]): number {
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i];
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term: the fast back-off
   * hint. A leader whose log has `term` at that point can skip every index in between,
   * since all of those carry terms above `term` and so cannot match.
   * An unknown term (compacted) is reported as 0 with the index: it may match.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ours = this.maybeTerm(index);
      if (ours === undefined) return { index, term: 0 };
      if (ours <= term) return { index, term: ours };
    }
    return { index: 0, term: 0 };
  }

  commitTo(toCommit: number): void {
    if (this.committed < toCommit) {
      if (this.lastIndex() < toCommit) {
        throw new RaftError(`tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`);
      }
      this.committed = toCommit;
    }
  }

  /**
   * The leader's commit rule: only an entry of the current term is committed by counting
   * replicas (Raft paper §5.4.2, Figure 8); earlier entries are committed with it.
   */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.zeroTermOnOutOfBounds(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    if (this.committed < index || index < this.applied) {
      throw new RaftError(
        `applied(${index}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`,
      );
    }
    this.applied = index;
    if (this.applying < index) this.applying = index;
  }

  acceptApplying(index: number): void {
    this.applying = index;
  }

  /** Committed entries not yet handed to the application (none while a snapshot is pending). */
  nextCommittedEntries(): Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    const lo = this.applying + 1;
    const hi = this.committed + 1;
    return this.slice(lo, hi, this.maxApplyingSize);
  }

  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot) return false;
    return this.committed > this.applying && this.applying + 1 >= this.firstIndex();
  }

  /** Entries from `lo` to the end, payload bounded by maxSize (at least one). Throws CompactedError. */
  entries(lo: number, maxSize: number): Entry[] {
    const last = this.lastIndex();
    if (lo > last) return [];
    return this.slice(lo, last + 1, maxSize);
  }

  /** Every entry from `lo` on; for tests and the conf-change scan. */
  allEntriesFrom(lo: number): Entry[] {
    return this.entries(lo, Number.POSITIVE_INFINITY);
  }

  slice(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo > hi) throw new RaftError(`invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError();
    const last = this.lastIndex();
    if (hi > last + 1) throw new RaftError(`slice[${lo},${hi}) out of bound [${first},${last}]`);
    if (lo === hi) return [];
    const uOffset = this.unstable.offset;
    if (lo >= uOffset) return limitSize(this.unstable.slice(lo, hi), maxSize);
    const cut = Math.min(hi, uOffset);
    const stored = this.storage.entries(lo, cut, maxSize);
    if (hi <= uOffset) return stored;
    // The storage stopped early: the size limit was reached.
    if (stored.length < cut - lo) return stored;
    const size = entriesPayloadSize(stored);
    if (size >= maxSize) return stored;
    const more = limitSize(this.unstable.slice(uOffset, hi), maxSize - size);
    if (more.length === 1 && size + more[0].data.length > maxSize) return stored;
    const out = stored.slice();
    for (let i = 0; i < more.length; i++) out.push(more[i]);
    return out;
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Installs a snapshot from the leader: the log restarts after it. */
  restore(snap: Snapshot): void {
    this.committed = snap.metadata.index;
    this.unstable.restore(snap);
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }
}
