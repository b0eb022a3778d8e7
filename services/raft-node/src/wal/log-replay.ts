// Rebuilds the Raft log from records in file order. Pure: no I/O.
//
// Raft overwrites a conflicting suffix by appending entries at a lower index, so an entry
// at index i replaces whatever the log held at i and cuts off everything after it. The
// log must stay contiguous: an entry more than one past the current last index means
// records (or a segment) went missing, which is corruption, never something to skip.

import type { Entry, HardState, SnapshotMetadata } from "@etcd-ts/raft";
import type { Frame } from "./record-frame.js";
import { RecordType } from "./record-frame.js";
import {
  decodeEntryPayload,
  decodeHardStatePayload,
  decodeSnapshotMarkerPayload,
  type SegmentHeader,
} from "./record-payloads.js";
import { asCorruption } from "./segment-scan.js";
import { WalCorruptionError } from "./wal-errors.js";

export interface SnapshotRef {
  index: number;
  term: number;
}

export interface ReplayedLog {
  /** The marker the entries start after; undefined when replaying from the log's start. */
  snapshot?: SnapshotMetadata;
  hardState?: HardState;
  /** Entries with index > snapshot.index (or all of them), contiguous. */
  entries: Entry[];
  /** Every snapshot marker still in the log, oldest first. */
  markers: SnapshotMetadata[];
  /** Last index of the log as written, counting a snapshot marker past the last entry. */
  lastIndex: number;
  /** Per segment, in order: the highest entry index it holds (0 when it holds none). */
  segmentMaxIndex: number[];
}

export class LogReplay {
  /** The log as written: log[k] has index logStart + k. */
  private log: Entry[] = [];
  private logStart = 1;
  private lastIndex = -1;
  private hardState?: HardState;
  private readonly markers: SnapshotMetadata[] = [];
  private readonly segmentMaxIndex: number[] = [];
  private file = "";

  beginSegment(file: string, header: SegmentHeader): void {
    this.file = file;
    if (this.lastIndex < 0) {
      this.lastIndex = header.firstIndex - 1;
      this.logStart = header.firstIndex;
    } else if (header.firstIndex !== this.lastIndex + 1) {
      throw new WalCorruptionError(
        file,
        0,
        `segment starts at index ${header.firstIndex} but the log before it ends at ${this.lastIndex}`,
      );
    }
    this.segmentMaxIndex.push(0);
  }

  apply(frame: Frame): void {
    try {
      switch (frame.type) {
        case RecordType.Entry:
          this.applyEntry(decodeEntryPayload(frame.payload), frame.offset);
          return;
        case RecordType.HardState:
          this.hardState = decodeHardStatePayload(frame.payload);
          return;
        case RecordType.SnapshotMarker:
          this.applyMarker(decodeSnapshotMarkerPayload(frame.payload));
          return;
        default:
          throw new WalCorruptionError(this.file, frame.offset, `unexpected record type ${frame.type}`);
      }
    } catch (err) {
      throw asCorruption(err, this.file, frame.offset);
    }
  }

  private applyEntry(entry: Entry, offset: number): void {
    const i = entry.index;
    if (i < 1 || i > this.lastIndex + 1) {
      throw new WalCorruptionError(
        this.file,
        offset,
        `entry ${i} does not follow the log's last index ${this.lastIndex}: records are missing`,
      );
    }
    if (i < this.logStart) {
      // Overwriting below what this replay holds: restart the log there.
      this.log = [];
      this.logStart = i;
    }
    this.log.length = i - this.logStart;
    this.log.push(entry);
    this.lastIndex = i;
    const seg = this.segmentMaxIndex.length - 1;
    if (i > this.segmentMaxIndex[seg]) this.segmentMaxIndex[seg] = i;
  }

  private applyMarker(meta: SnapshotMetadata): void {
    this.markers.push(meta);
    if (meta.index > this.lastIndex) {
      // A snapshot from the leader beyond our log: the log continues after it.
      this.log = [];
      this.logStart = meta.index + 1;
      this.lastIndex = meta.index;
    }
  }

  /** The snapshot markers seen so far, oldest first. */
  get snapshotMarkers(): readonly SnapshotMetadata[] {
    return this.markers;
  }

  /**
   * `startAt` picks the snapshot the caller has (e.g. the newest snapshot file that
   * loaded); by default the newest marker. `{index: 0, term: 0}` means "from the start".
   */
  finish(startAt?: SnapshotRef): ReplayedLog {
    let snapshot: SnapshotMetadata | undefined;
    if (startAt === undefined) {
      snapshot = this.markers.at(-1);
    } else if (startAt.index !== 0) {
      snapshot = this.markers.findLast((m) => m.index === startAt.index && m.term === startAt.term);
      if (!snapshot) {
        throw new WalCorruptionError(
          this.file,
          0,
          `no snapshot marker for index ${startAt.index} term ${startAt.term} in the WAL`,
        );
      }
    }
    const base = snapshot?.index ?? 0;
    if (base + 1 < this.logStart) {
      throw new WalCorruptionError(
        this.file,
        0,
        `entries ${base + 1}..${this.logStart - 1} after the snapshot at ${base} are no longer in the WAL`,
      );
    }
    const entries = this.log.slice(Math.max(0, base + 1 - this.logStart));
    return {
      snapshot,
      hardState: this.hardState,
      entries,
      markers: this.markers,
      lastIndex: this.lastIndex,
      segmentMaxIndex: this.segmentMaxIndex,
    };
  }
}
