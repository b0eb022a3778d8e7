// Test fixture: builds a segment's bytes in memory the way Wal writes them (header and
// carried records, then groups, each led by a SyncPoint when synced), remembering where
// every record starts so tests can damage precise spots.

import type { Entry, HardState, SnapshotMetadata } from "@etcd-ts/raft";
import { readFrame } from "./record-frame.js";
import { encodeSaveRecords, encodeSegmentStart, encodeSyncPoint } from "./record-payloads.js";

export interface GroupSpec {
  entries?: Entry[];
  hardState?: HardState;
  marker?: SnapshotMetadata;
}

export interface SegmentImage {
  bytes: Buffer;
  /** Per group: the offsets of its records (SyncPoint first when synced). */
  groupRecordOffsets: number[][];
}

export function buildSegmentImage(
  salt: number,
  seq: number,
  firstIndex: number,
  groups: GroupSpec[],
  synced = true,
  carried?: Buffer,
): SegmentImage {
  const parts: Buffer[] = [encodeSegmentStart(salt, seq, firstIndex, carried ?? Buffer.alloc(0))];
  let size = parts[0].length;
  const groupRecordOffsets: number[][] = [];
  for (const g of groups) {
    const start = size;
    if (synced) {
      const sp = encodeSyncPoint(size, salt);
      parts.push(sp);
      size += sp.length;
    }
    const records = encodeSaveRecords(g.hardState, g.entries ?? [], g.marker, salt);
    parts.push(records);
    size += records.length;
    const bytes = Buffer.concat(parts);
    const offsets: number[] = [];
    for (let at = start; at < size; ) {
      const read = readFrame(bytes, at, salt);
      if (!read.ok) throw new Error("fixture built an unreadable record");
      offsets.push(at);
      at = read.frame.end;
    }
    groupRecordOffsets.push(offsets);
  }
  return { bytes: Buffer.concat(parts), groupRecordOffsets };
}

export function entry(index: number, term = 1, data = `entry-${index}`): Entry {
  return { term, index, type: 0, data: Buffer.from(data) };
}

export function entries(from: number, to: number, term = 1): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}
