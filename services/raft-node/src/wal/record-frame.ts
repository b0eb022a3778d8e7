// The on-disk framing of one WAL record. Pure: no I/O.
//
// Layout (little-endian), every record starting at an 8-byte aligned offset:
//
//   0  u32  CRC32C of bytes [4, paddedEnd): the rest of this header, the payload, the padding
//   4  u32  payload length
//   8  u8   record type
//   9  u8x3 reserved, zero
//  12  ...  payload, then zero padding up to the next multiple of 8
//
// Each record carries its own checksum instead of one chained through the log (etcd's
// choice). A per-record CRC lets recovery verify records *after* a damaged one, which is
// what tells a torn tail (only unsynced bytes are bad) from corruption of durable data
// (an intact, provably-synced record follows the bad one; see segment-scan.ts). What a
// chain adds, detecting a whole record going missing, is covered instead by the index
// continuity checks in log-replay.ts and by segment sequence numbers.
//
// The CRC is seeded with a random per-WAL salt (0 for the segment header, which carries
// the salt), so bytes that merely look like a record, such as a WAL file stored as a value
// by a client or a stale block from another file, do not verify.

import { crc32c } from "@node-rs/crc32";

export const FRAME_HEADER_BYTES = 12;
export const FRAME_ALIGNMENT = 8;
/** Larger than any sane record (etcd caps requests at 1.5 MiB); a bigger length is damage. */
export const MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;

export enum RecordType {
  /** First record of every segment: magic, version, salt, sequence, first index. */
  SegmentHeader = 1,
  Entry = 2,
  HardState = 3,
  /** Index, term and membership of a snapshot the log may be replayed from. */
  SnapshotMarker = 4,
  /**
   * Written first in every write that follows an fsync, with its own offset as payload:
   * proof that every byte before it was durable. Recovery uses it to decide whether a bad
   * record could be a torn, never-acknowledged write or must be corruption.
   */
  SyncPoint = 5,
}

const KNOWN_TYPES = new Set<number>([
  RecordType.SegmentHeader,
  RecordType.Entry,
  RecordType.HardState,
  RecordType.SnapshotMarker,
  RecordType.SyncPoint,
]);

export function paddedFrameBytes(payloadBytes: number): number {
  const raw = FRAME_HEADER_BYTES + payloadBytes;
  return (raw + FRAME_ALIGNMENT - 1) & ~(FRAME_ALIGNMENT - 1);
}

/**
 * Writes the frame around a payload that the caller has already placed at
 * `offset + FRAME_HEADER_BYTES`, zeroes the padding and computes the CRC.
 * Returns the offset just past the frame.
 */
export function sealFrame(
  buf: Buffer,
  offset: number,
  type: RecordType,
  payloadBytes: number,
  salt: number,
): number {
  const end = offset + paddedFrameBytes(payloadBytes);
  buf.writeUInt32LE(payloadBytes, offset + 4);
  buf[offset + 8] = type;
  buf[offset + 9] = 0;
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
  buf.fill(0, offset + FRAME_HEADER_BYTES + payloadBytes, end);
  buf.writeUInt32LE(crc32c(buf.subarray(offset + 4, end), salt), offset);
  return end;
}

/** A one-record buffer; for the hot path, encode many records into one buffer with sealFrame. */
export function encodeFrame(type: RecordType, payload: Uint8Array, salt: number): Buffer {
  const buf = Buffer.allocUnsafe(paddedFrameBytes(payload.length));
  buf.set(payload, FRAME_HEADER_BYTES);
  sealFrame(buf, 0, type, payload.length, salt);
  return buf;
}

export interface Frame {
  type: RecordType;
  /** A view into the scanned buffer, not a copy. */
  payload: Buffer;
  offset: number;
  end: number;
}

/** Why a frame could not be read; the text goes into error messages and logs. */
export type FrameDefect =
  | { kind: "truncated"; detail: string }
  | { kind: "invalid"; detail: string }
  | { kind: "checksum"; detail: string };

export type FrameReadResult = { ok: true; frame: Frame } | { ok: false; defect: FrameDefect };

export function readFrame(buf: Buffer, offset: number, salt: number): FrameReadResult {
  const available = buf.length - offset;
  if (available < FRAME_HEADER_BYTES) {
    return {
      ok: false,
      defect: {
        kind: "truncated",
        detail: `only ${available} bytes left, a record header needs ${FRAME_HEADER_BYTES}`,
      },
    };
  }
  const type = buf[offset + 8];
  if (!KNOWN_TYPES.has(type)) {
    const zeros = isAllZero(buf, offset, Math.min(buf.length, offset + FRAME_HEADER_BYTES));
    return {
      ok: false,
      defect: {
        kind: "invalid",
        detail: zeros ? "zero-filled record header" : `unknown record type ${type}`,
      },
    };
  }
  if (buf[offset + 9] !== 0 || buf[offset + 10] !== 0 || buf[offset + 11] !== 0) {
    return { ok: false, defect: { kind: "invalid", detail: "non-zero reserved header bytes" } };
  }
  const payloadBytes = buf.readUInt32LE(offset + 4);
  if (payloadBytes > MAX_PAYLOAD_BYTES) {
    return { ok: false, defect: { kind: "invalid", detail: `implausible record length ${payloadBytes}` } };
  }
  const end = offset + paddedFrameBytes(payloadBytes);
  if (end > buf.length) {
    return {
      ok: false,
      defect: {
        kind: "truncated",
        detail: `record of ${end - offset} bytes has only ${available} bytes in the file`,
      },
    };
  }
  const expected = buf.readUInt32LE(offset);
  const actual = crc32c(buf.subarray(offset + 4, end), salt);
  if (expected !== actual) {
    return {
      ok: false,
      defect: {
        kind: "checksum",
        detail: `checksum mismatch (stored ${hex32(expected)}, computed ${hex32(actual)})`,
      },
    };
  }
  const payload = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + payloadBytes);
  return { ok: true, frame: { type: type as RecordType, payload, offset, end } };
}

export function isAllZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}
