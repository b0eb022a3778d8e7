import { RaftError } from "./errors.js";
import type { Entry, Snapshot } from "./types.js";

/**
 * Entries (and possibly an incoming snapshot) the core holds but the application has not
 * yet confirmed as persisted. `entries[i]` has index `offset + i`. Everything from
 * `offsetInProgress` on has not yet been handed out in a Ready.
 */
export class UnstableLog {
  snapshot: Snapshot | undefined;
  /** The snapshot was handed out in a Ready and is being persisted. */
  snapshotInProgress = false;
  entries: Entry[] = [];
  offset: number;
  offsetInProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.metadata.index : undefined;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      const snap = this.snapshot;
      return snap && snap.metadata.index === index ? snap.metadata.term : undefined;
    }
    const i = index - this.offset;
    return i < this.entries.length ? this.entries[i].term : undefined;
  }

  nextEntries(): Entry[] {
    const start = this.offsetInProgress - this.offset;
    if (start >= this.entries.length) return [];
    return this.entries.slice(start);
  }

  hasNextEntries(): boolean {
    return this.offsetInProgress - this.offset < this.entries.length;
  }

  nextSnapshot(): Snapshot | undefined {
    return this.snapshot && !this.snapshotInProgress ? this.snapshot : undefined;
  }

  /** Marks everything currently held as handed out to the application. */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot) this.snapshotInProgress = true;
  }

  /**
   * The application persisted entries up to (index, term). Entries replaced since they were
   * handed out (different term at that index) stay unstable: their replacements still
   * have to be written.
   */
  stableTo(index: number, term: number): void {
    if (this.snapshot) return; // entries follow a snapshot that is not yet persisted
    const t = this.maybeTerm(index);
    if (t === undefined || t !== term || index < this.offset) return;
    const n = index + 1 - this.offset;
    this.entries = n === this.entries.length ? [] : this.entries.slice(n);
    this.offset = index + 1;
    if (this.offsetInProgress < this.offset) this.offsetInProgress = this.offset;
  }

  stableSnapTo(index: number): void {
    if (this.snapshot && this.snapshot.metadata.index === index) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  restore(snap: Snapshot): void {
    this.offset = snap.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = snap;
    this.snapshotInProgress = false;
  }

  truncateAndAppend(ents: Entry[]): void {
    const from = ents[0].index;
    if (from === this.offset + this.entries.length) {
      for (let i = 0; i < ents.length; i++) this.entries.push(ents[i]);
    } else if (from <= this.offset) {
      // Replaces everything unstable; the storage truncates its own suffix when these are
      // persisted.
      this.entries = ents.slice();
      this.offset = from;
      this.offsetInProgress = from;
    } else {
      const kept = this.entries.slice(0, from - this.offset);
      for (let i = 0; i < ents.length; i++) kept.push(ents[i]);
      this.entries = kept;
      if (this.offsetInProgress > from) this.offsetInProgress = from;
    }
  }

  /** Entries in [lo, hi), which must lie within the unstable range. */
  slice(lo: number, hi: number): Entry[] {
    const upper = this.offset + this.entries.length;
    if (lo > hi || lo < this.offset || hi > upper) {
      throw new RaftError(`unstable.slice[${lo},${hi}) out of bound [${this.offset},${upper}]`);
    }
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
