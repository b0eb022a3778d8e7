// Payload encodings of the WAL's record types. Pure: no I/O.
//
// Payload encodings of the WAL's record types. Pure: no I/O.
//
// Entries, hard states and snapshot metadata use @etcd-ts/raft's codecs, the same bytes
// the peer transport carries; segment headers and sync points are the WAL's own.
// Integers of the WAL's own payloads are u64 little-endian (numbers stay below 2^53).

import {
  decodeEntry,
  decodeHardState,
  decodeSnapshotMetadata,
  type Entry,
  EntryType,
  encodeHardState,
  encodeSnapshotMetadata,
  type HardState,
  RaftError,
  type SnapshotMetadata,
} from "@etcd-ts/raft";
import { FRAME_HEADER_BYTES, paddedFrameBytes, RecordType, sealFrame } from "./record-frame.js";

const TWO_32 = 2 ** 32;

export class PayloadFormatError extends Error {}

function writeU64(buf: Buffer, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`WAL: ${value} is not a non-negative safe integer`);
  }
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  const value = buf.readUInt32LE(offset + 4) * TWO_32 + buf.readUInt32LE(offset);
  if (!Number.isSafeInteger(value))
    throw new PayloadFormatError(`integer at payload offset ${offset} exceeds 2^53`);
  return value;
}

function requireLength(payload: Buffer, atLeast: number, what: string): void {
  if (payload.length < atLeast) {
    throw new PayloadFormatError(`${what} payload is ${payload.length} bytes, needs at least ${atLeast}`);
  }
}

/** Runs a Raft decoder, turning its malformed-input error into the WAL's. */
function decodeWith<T>(decode: (b: Uint8Array) => T, payload: Buffer): T {
  try {
    return decode(payload);
  } catch (err) {
    if (err instanceof RaftError) throw new PayloadFormatError(err.message);
    throw err;
  }
}

/** The entry's data is copied out, so it does not pin the segment buffer it was read from. */
export function decodeEntryPayload(payload: Buffer): Entry {
  const e = decodeWith(decodeEntry, payload);
  return { term: e.term, index: e.index, type: e.type, data: new Uint8Array(e.data) };
}

export function decodeHardStatePayload(payload: Buffer): HardState {
  return decodeWith(decodeHardState, payload);
}

export function decodeSnapshotMarkerPayload(payload: Buffer): SnapshotMetadata {
  return decodeWith(decodeSnapshotMetadata, payload);
}

// --- SegmentHeader -----------------------------------------------------------------

const SEGMENT_MAGIC = Buffer.from("etcdtsWL", "latin1");
export const SEGMENT_FORMAT_VERSION = 1;
const SEGMENT_HEADER_BYTES = 40;

export interface SegmentHeader {
  /** Random per WAL directory; seeds every later record's CRC (see record-frame.ts). */
  salt: number;
  /** 0, 1, 2... with no gaps: a missing number is a missing file. */
  seq: number;
  /** The index the next entry appended to this segment was expected to have. */
  firstIndex: number;
  /**
   * Bytes (header included) written and synced before the segment got its name: damage
   * below this offset is corruption even at the very end of the log, never a torn write.
   */
  createdBytes: number;
}

export function encodeSegmentHeaderPayload(header: SegmentHeader): Buffer {
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(SEGMENT_FORMAT_VERSION, 8);
  buf.writeUInt32LE(header.salt >>> 0, 12);
  writeU64(buf, 16, header.seq);
  writeU64(buf, 24, header.firstIndex);
  writeU64(buf, 32, header.createdBytes);
  return buf;
}

export function decodeSegmentHeaderPayload(payload: Buffer): SegmentHeader {
  requireLength(payload, SEGMENT_HEADER_BYTES, "segment header");
  if (!payload.subarray(0, 8).equals(SEGMENT_MAGIC)) throw new PayloadFormatError("bad segment magic");
  const version = payload.readUInt32LE(8);
  if (version !== SEGMENT_FORMAT_VERSION) {
    throw new PayloadFormatError(
      `segment format version ${version}, this build reads ${SEGMENT_FORMAT_VERSION}`,
    );
  }
  return {
    salt: payload.readUInt32LE(12),
    seq: readU64(payload, 16),
    firstIndex: readU64(payload, 24),
    createdBytes: readU64(payload, 32),
  };
}

/**
 * The bytes a new segment is created with: its header, then `carried` (records copied
 * forward so the log stays replayable once older segments are released).
 */
export function encodeSegmentStart(salt: number, seq: number, firstIndex: number, carried: Buffer): Buffer {
  const headerFrameBytes = paddedFrameBytes(SEGMENT_HEADER_BYTES);
  const createdBytes = headerFrameBytes + carried.length;
  const buf = Buffer.allocUnsafe(createdBytes);
  encodeSegmentHeaderPayload({ salt, seq, firstIndex, createdBytes }).copy(buf, FRAME_HEADER_BYTES);
  sealFrame(buf, 0, RecordType.SegmentHeader, SEGMENT_HEADER_BYTES, 0);
  carried.copy(buf, headerFrameBytes);
  return buf;
}

// --- SyncPoint ---------------------------------------------------------------------

export function decodeSyncPointPayload(payload: Buffer): number {
  requireLength(payload, 8, "sync point");
  return readU64(payload, 0);
}

// --- Batches -----------------------------------------------------------------------

/** What one save() contributes to the log, framed and checksummed, ready to write. */
export function encodeSaveRecords(
  hardState: HardState | undefined,
  entries: readonly Entry[],
  marker: SnapshotMetadata | undefined,
  salt: number,
): Buffer {
  const markerPayload = marker ? encodeSnapshotMetadata(marker) : undefined;
  const hardStatePayload = hardState ? encodeHardState(hardState) : undefined;
  let total = 0;
  for (let k = 0; k < entries.length; k++) total += paddedFrameBytes(entryPayloadBytes(entries[k]));
  if (markerPayload) total += paddedFrameBytes(markerPayload.length);
  if (hardStatePayload) total += paddedFrameBytes(hardStatePayload.length);
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  // Entries precede the hard state: should the write tear, a surviving hard state must
  // never point its commit index past entries that did not make it to disk.
  for (let k = 0; k < entries.length; k++) {
    const end = writeEntryPayload(buf, at + FRAME_HEADER_BYTES, entries[k]);
    at = sealFrame(buf, at, RecordType.Entry, end - at - FRAME_HEADER_BYTES, salt);
  }
  for (const [type, payload] of [
    [RecordType.SnapshotMarker, markerPayload],
    [RecordType.HardState, hardStatePayload],
  ] as const) {
    if (!payload) continue;
    buf.set(payload, at + FRAME_HEADER_BYTES);
    at = sealFrame(buf, at, type, payload.length, salt);
  }
  return buf;
}

// Entries are the WAL's hot path, so they are written straight into the frame buffer
// rather than through encodeEntry's own allocation and a copy. The bytes are exactly
// @etcd-ts/raft's entry encoding (varint term, index, type, then varint-length data),
// which record-frame.test.ts checks against encodeEntry; decoding uses decodeEntry.

function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`cannot encode ${n}: not a safe unsigned integer`);
  while (n >= 0x80) {
    buf[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[at++] = n;
  return at;
}

export function entryPayloadBytes(e: Entry): number {
  return (
    varintBytes(e.term) +
    varintBytes(e.index) +
    varintBytes(e.type) +
    varintBytes(e.data.length) +
    e.data.length
  );
}

function writeEntryPayload(buf: Buffer, at: number, e: Entry): number {
  // decodeEntry rejects unknown types, so writing one would make the log unreadable.
  if (e.type !== EntryType.Normal && e.type !== EntryType.ConfChange) {
    throw new RangeError(`WAL: entry ${e.index} has unknown type ${e.type}`);
  }
  at = writeVarint(buf, at, e.term);
  at = writeVarint(buf, at, e.index);
  at = writeVarint(buf, at, e.type);
  at = writeVarint(buf, at, e.data.length);
  buf.set(e.data, at);
  return at + e.data.length;
}

export const SYNC_POINT_FRAME_BYTES = paddedFrameBytes(8);

export function encodeSyncPoint(offsetInSegment: number, salt: number): Buffer {
  const buf = Buffer.allocUnsafe(SYNC_POINT_FRAME_BYTES);
  writeU64(buf, FRAME_HEADER_BYTES, offsetInSegment);
  sealFrame(buf, 0, RecordType.SyncPoint, 8, salt);
  return buf;
}
