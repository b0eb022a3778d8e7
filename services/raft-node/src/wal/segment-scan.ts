// Reads one segment's bytes into records and decides what to do with damage. Pure: no I/O.
//
// The rule for a record that fails to read at offset X:
// - In any segment but the last, it is corruption: the WAL only moves to a new segment
//   after the old one was fully written and synced.
// - In the last segment, it is a torn tail (a crash during a write that was never
//   acknowledged), unless a SyncPoint record follows it. The WAL never writes while an
//   fsync is in flight and begins every write that follows a completed fsync with a
//   SyncPoint, so an intact SyncPoint after X proves X was durable before the crash:
//   then the damage is corruption and start-up stops. Intact records of other types
//   after X are no such proof: the bytes written since the last fsync may reach the disk
//   in any order (later pages kept, earlier ones lost), so they go with the torn write.
// - Damage inside the records a segment was created with is always corruption: they were
//   synced before the file got its name.
// Consequence, stated plainly: bytes damaged inside the last acknowledged write (after its
// fsync returned) look exactly like a torn write and are truncated, with a log line and
// a report, because nothing on disk can tell the two apart without a second fsync.

import { FRAME_ALIGNMENT, type Frame, isAllZero, RecordType, readFrame } from "./record-frame.js";
import {
  decodeSegmentHeaderPayload,
  decodeSyncPointPayload,
  PayloadFormatError,
  type SegmentHeader,
} from "./record-payloads.js";
import { WalCorruptionError } from "./wal-errors.js";

export interface TornTail {
  file: string;
  /** Where the file is cut: the start of the first record that did not read. */
  offset: number;
  reason: string;
  droppedBytes: number;
  /** Whole records that verified after the damage and are dropped with the torn write. */
  intactRecordsDropped: number;
  zeroFilled: boolean;
}

export interface ScannedSegment {
  header: SegmentHeader;
  /** Records after the header, in file order; SyncPoints are checked and left out. */
  records: Frame[];
  /** Just past the last good record: where the next write goes. */
  end: number;
  torn?: TornTail;
}

export function scanSegment(buf: Buffer, file: string, isLast: boolean): ScannedSegment {
  const first = readFrame(buf, 0, 0);
  if (!first.ok) throw new WalCorruptionError(file, 0, `unreadable segment header: ${first.defect.detail}`);
  if (first.frame.type !== RecordType.SegmentHeader) {
    throw new WalCorruptionError(
      file,
      0,
      `first record has type ${first.frame.type}, expected a segment header`,
    );
  }
  let header: SegmentHeader;
  try {
    header = decodeSegmentHeaderPayload(first.frame.payload);
  } catch (err) {
    throw asCorruption(err, file, 0);
  }

  const records: Frame[] = [];
  let at = first.frame.end;
  while (at < buf.length) {
    const result = readFrame(buf, at, header.salt);
    if (!result.ok) {
      const torn = judgeDamage(buf, file, at, result.defect.detail, header.salt, header.createdBytes, isLast);
      return { header, records, end: at, torn };
    }
    const frame = result.frame;
    if (frame.type === RecordType.SegmentHeader) {
      throw new WalCorruptionError(file, at, "a second segment header inside the segment");
    }
    if (frame.type === RecordType.SyncPoint) {
      const claimed = syncPointOffset(frame, file);
      if (claimed !== at) {
        throw new WalCorruptionError(file, at, `sync point records offset ${claimed}: misplaced data`);
      }
    } else {
      records.push(frame);
    }
    at = frame.end;
  }
  return { header, records, end: at };
}

function judgeDamage(
  buf: Buffer,
  file: string,
  badAt: number,
  defect: string,
  salt: number,
  createdBytes: number,
  isLast: boolean,
): TornTail {
  if (!isLast) {
    throw new WalCorruptionError(file, badAt, `${defect}, in a segment that is not the last one`);
  }
  if (badAt < createdBytes) {
    throw new WalCorruptionError(file, badAt, `${defect}, in records synced when the segment was created`);
  }
  let intactAfter = 0;
  let probe = badAt + FRAME_ALIGNMENT;
  while (probe < buf.length) {
    const result = readFrame(buf, probe, salt);
    if (!result.ok) {
      probe += FRAME_ALIGNMENT;
      continue;
    }
    if (result.frame.type === RecordType.SyncPoint && syncPointOffset(result.frame, file) === probe) {
      throw new WalCorruptionError(
        file,
        badAt,
        `${defect}; a record written after a later fsync follows at offset ${probe}, so this data was durable`,
      );
    }
    intactAfter++;
    probe = result.frame.end;
  }
  return {
    file,
    offset: badAt,
    reason: defect,
    droppedBytes: buf.length - badAt,
    intactRecordsDropped: intactAfter,
    zeroFilled: isAllZero(buf, badAt, buf.length),
  };
}

function syncPointOffset(frame: Frame, file: string): number {
  try {
    return decodeSyncPointPayload(frame.payload);
  } catch (err) {
    throw asCorruption(err, file, frame.offset);
  }
}

export function asCorruption(err: unknown, file: string, offset: number): Error {
  if (err instanceof PayloadFormatError) return new WalCorruptionError(file, offset, err.message);
  return err instanceof Error ? err : new Error(String(err));
}
